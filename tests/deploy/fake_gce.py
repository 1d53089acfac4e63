"""A fake of the Google endpoints deploy/gcp/startup.sh talks to, on one local aiohttp server:

    /computeMetadata/v1/...             the metadata server: instance attributes, the project
                                        id, the service account's token; like the real one it
                                        answers 403 without ``Metadata-Flavor: Google``
    /v1/projects/P/secrets/S/versions/latest:access
                                        Secret Manager's REST access call (Bearer token needed)
    /storage/v1/b/B/o/O?alt=media       Cloud Storage's JSON API download (Bearer token needed)
    /health/live                        the GPU host's liveness, for the gateway's first boot

It follows the shapes of the real APIs as documented: computeMetadata v1, Secret Manager v1
``AccessSecretVersionResponse`` (``payload.data`` in base64), Storage JSON API v1 ``objects.get``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from aiohttp import web

TOKEN = "ya29.fake-token"


@dataclass
class FakeGce:
    project: str
    attributes: dict[str, str]
    secrets: dict[str, str]
    objects: dict[tuple[str, str], bytes]
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Metadata-Flavor)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/computeMetadata/v1/{path:.+}", self.metadata)
        app.router.add_get(
            "/v1/projects/{project}/secrets/{secret}/versions/latest:access", self.secret
        )
        app.router.add_get("/storage/v1/b/{bucket}/o/{name:.+}", self.object)
        app.router.add_get("/health/live", self.live)
        return app

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        flavor = request.headers.get("Metadata-Flavor", "")
        self.requests.append((request.path, flavor))
        if flavor != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.")
        path = request.match_info["path"]
        if path == "project/project-id":
            return web.Response(text=self.project)
        if path == "instance/service-accounts/default/token":
            return web.json_response(
                {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            )
        name = path.removeprefix("instance/attributes/")
        if name != path and name in self.attributes:
            return web.Response(text=self.attributes[name])
        return web.Response(status=404, text="Not Found")

    def _authorised(self, request: web.Request) -> bool:
        self.requests.append((request.path, request.headers.get("Authorization", "")))
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def secret(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        project, name = request.match_info["project"], request.match_info["secret"]
        if project != self.project or name not in self.secrets:
            return web.json_response({"error": {"code": 404}}, status=404)
        data = base64.b64encode(self.secrets[name].encode()).decode()
        return web.json_response(
            {
                "name": f"projects/{project}/secrets/{name}/versions/1",
                "payload": {"data": data, "dataCrc32c": "0"},
            }
        )

    async def object(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        key = (request.match_info["bucket"], request.match_info["name"])
        if request.query.get("alt") != "media" or key not in self.objects:
            return web.json_response({"error": {"code": 404}}, status=404)
        return web.Response(body=self.objects[key], content_type="application/x-gzip")

    async def live(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, ""))
        return web.json_response({"status": "live"})
