#!/usr/bin/env bash
# Boot script of the two VMs deploy/gcp makes (the instance metadata's startup-script): GCE runs
# it as root at every boot, so every step is idempotent and cheap the second time.
#
#   vo-role = host     the GPU host: the NVIDIA driver (Ubuntu's signed, precompiled modules,
#                      nvidia:BRANCH-server), the project's venv with PyPI's CUDA torch, Ollama
#                      and the profile's models on disk, PersonaPlex where the profile has it
#                      (its gated weights with the HF token from Secret Manager), then
#                      /etc/voice-orchestrator/server.{toml,env} and voice-orchestrator.service
#   vo-role = gateway  the venv with the gateway extra (CPU torch), the bridge's CPU models if it
#                      is on, /etc/voice-orchestrator/gateway.{toml,env}, Caddy in front (TLS on
#                      443 for vo-domain) and voice-orchestrator-gateway.service
#
# Its inputs are the instance's metadata attributes vo-* (set by the Terraform beside it), the
# project's code as a .tar.gz in Cloud Storage, and the keys in Secret Manager, read with the
# VM's service account token. It uses curl and python3 only, both on Ubuntu's image.
# For tests: VO_METADATA_URL, VO_SECRETS_API and VO_STORAGE_API point it at fakes, VO_ROOT
# prefixes every path it writes, VO_SECRET_TRIES and VO_SECRET_WAIT_S bound its waiting.
set -euo pipefail

metadata_url=${VO_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}
secrets_api=${VO_SECRETS_API:-https://secretmanager.googleapis.com/v1}
storage_api=${VO_STORAGE_API:-https://storage.googleapis.com/storage/v1}
ollama_url=${VO_OLLAMA_URL:-https://ollama.com/download/ollama-linux-amd64.tar.zst}
root=${VO_ROOT:-}
app=$root/opt/voice-orchestrator
etc=$root/etc/voice-orchestrator
units=$root/etc/systemd/system
state=$root/var/lib/voice-orchestrator
cache=$root/var/cache/voice-orchestrator
user=voice-orchestrator
py=$app/.venv/bin/python
export DEBIAN_FRONTEND=noninteractive

log() { echo "vo-startup: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# -- reading the metadata and the secrets ------------------------------------------------------

# metadata PATH [DEFAULT]: a metadata value; DEFAULT (or nothing) where the server says 404.
metadata() {
  local body code
  body=$(mktemp)
  code=$(curl -sS --max-time 10 --retry 5 --retry-connrefused -o "$body" -w '%{http_code}' \
    -H 'Metadata-Flavor: Google' "$metadata_url/$1") || code=000
  case $code in
    200) cat "$body" ;;
    404) printf '%s' "${2-}" ;;
    *)
      rm -f "$body"
      die "metadata $1: HTTP $code"
      ;;
  esac
  rm -f "$body"
}

attr() { metadata "instance/attributes/$1" "${2-}"; }

# json_get KEY...: the value at that path of the JSON document on stdin.
json_get() {
  python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[key]
print(value)' "$@"
}

access_token() { metadata instance/service-accounts/default/token | json_get access_token; }

# secret NAME: the latest version of a Secret Manager secret. A fresh VM may ask before its
# service account's grant has spread (IAM takes up to a few minutes): 403 and 404 are retried.
secret() {
  local body code try tries=${VO_SECRET_TRIES:-30}
  body=$(mktemp)
  for ((try = 1; try <= tries; try++)); do
    code=$(curl -sS --max-time 30 --retry 3 -o "$body" -w '%{http_code}' \
      -H "Authorization: Bearer $(access_token)" \
      "$secrets_api/projects/$project/secrets/$1/versions/latest:access") || code=000
    if [ "$code" = 200 ]; then
      json_get payload data <"$body" | base64 -d
      rm -f "$body"
      return 0
    fi
    log "secret $1: HTTP $code (try $try of $tries)"
    sleep "${VO_SECRET_WAIT_S:-10}"
  done
  rm -f "$body"
  die "secret $1 unreadable: does it have a version, and may this VM's service account read it?"
}

# A value for an environment file or TOML: refuse what could break out of its line.
plain() {
  case $2 in
    "" | *[!A-Za-z0-9_.:/+=~-]*) die "$1 is empty or has unexpected characters" ;;
  esac
  printf '%s' "$2"
}

number() {
  case $2 in
    "" | *[!0-9.]* | *.*.*) die "$1 is not a number: $2" ;;
  esac
  printf '%s' "$2"
}

# -- the machine -------------------------------------------------------------------------------

install_packages() {
  local stamp=$state/.vo-packages
  if [ "$(cat "$stamp" 2>/dev/null)" = "$*" ]; then
    return 0
  fi
  log "installing packages: $*"
  dpkg --configure -a # a stop in the middle of an install leaves dpkg half done
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@"
  mkdir -p "$state"
  printf '%s\n' "$*" >"$stamp"
}

ensure_user() {
  if ! getent passwd "$user" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/voice-orchestrator \
      --shell /usr/sbin/nologin "$user"
  fi
  mkdir -p "$state" "$cache"
  chmod 0700 "$state"
  chmod 0750 "$cache"
  chown "$user:$user" "$state" "$cache"
}

# The NVIDIA driver from Ubuntu's archive: `ubuntu-drivers --gpgpu` installs the headless
# driver with modules prebuilt and signed for the running (GCP) kernel; nvidia-utils brings
# nvidia-smi. Modules that do not load at once get one reboot.
install_driver() {
  local branch marker=$state/.vo-driver-reboot
  if nvidia-smi >/dev/null 2>&1; then
    return 0
  fi
  branch=$(plain vo-driver-branch "$(attr vo-driver-branch 580)")
  log "installing the NVIDIA driver nvidia:$branch-server"
  install_packages "${host_packages[@]}"
  ubuntu-drivers install --gpgpu "nvidia:$branch-server"
  apt-get install -y -qq --no-install-recommends "nvidia-utils-$branch-server"
  modprobe nvidia || true
  if nvidia-smi >/dev/null 2>&1; then
    return 0
  fi
  if [ ! -e "$marker" ]; then
    touch "$marker"
    log "the driver needs a reboot; rebooting once"
    systemctl reboot
    exit 0
  fi
  die "nvidia-smi fails after the driver's install and a reboot (see dmesg)"
}

# The project's code: fetched again only when the object's name (which carries its checksum)
# changed. The venv moves over to the new tree; ensure-venv.sh updates it if pyproject changed.
install_source() {
  local bucket object tmp new
  bucket=$(plain vo-source-bucket "$(attr vo-source-bucket)")
  object=$(plain vo-source-object "$(attr vo-source-object)")
  if [ "$(cat "$app/.vo-source" 2>/dev/null)" = "$object" ]; then
    log "source $object already installed"
    return 0
  fi
  log "fetching gs://$bucket/$object"
  tmp=$(mktemp -d)
  curl -fsS --max-time 600 --retry 5 -o "$tmp/source.tar.gz" \
    -H "Authorization: Bearer $(access_token)" \
    "$storage_api/b/$bucket/o/$(python3 -c 'import sys, urllib.parse
print(urllib.parse.quote(sys.argv[1], safe=""))' "$object")?alt=media"
  new=$app.new
  rm -rf "$new" "$app.old"
  mkdir -p "$new"
  tar -xzf "$tmp/source.tar.gz" -C "$new"
  if [ -d "$app/.venv" ]; then
    mv "$app/.venv" "$new/.venv"
  fi
  if [ -d "$app" ]; then
    mv "$app" "$app.old"
  fi
  mv "$new" "$app"
  rm -rf "$app.old" "$tmp"
  printf '%s\n' "$object" >"$app/.vo-source"
}

install_venv() {
  local index
  index=$(attr vo-torch-index-url)
  log "installing the project ($1) into $app/.venv"
  VO_VENV=$app/.venv PYTHON=python3 VO_TORCH_INDEX_URL=$index "$app/scripts/ensure-venv.sh" "$1"
}

# as_service CMD...: run as the service user with the environment its unit gives it (setpriv
# execs, so a command started in the background is the PID that $! names).
as_service() { "${service[@]}" "$@"; }
service=(setpriv "--reuid=$user" "--regid=$user" --init-groups env HOME="$state"
  VO__STATE__DIR="$state" VO__MODELS__DIR="$cache/models" XDG_CACHE_HOME="$cache"
  OLLAMA_MODELS="$cache/ollama")

install_unit() {
  mkdir -p "$units"
  install -m 0644 "$app/deploy/systemd/$1" "$units/$1"
  systemctl daemon-reload
  systemctl enable "$1"
  systemctl restart "$1"
}

# write_private FILE: stdin into FILE, root-only (systemd reads it before dropping to the user).
write_private() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  chmod 0600 "$tmp"
  cat >"$tmp"
  mv "$tmp" "$1"
}

write_public() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  chmod 0644 "$tmp"
  mv "$tmp" "$1"
}

# -- the GPU host ------------------------------------------------------------------------------

# profile_engines NAME: "ADAPTER MODEL" per engine of a profile.
profile_engines() {
  python3 - "$app/config/profiles/$1.toml" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    engines = tomllib.load(handle).get("engines", {})
for engine in engines.values():
    print(engine.get("adapter", ""), engine.get("model", ""))
PY
}

install_ollama() {
  local version url
  if command -v ollama >/dev/null 2>&1; then
    return 0
  fi
  version=$(attr vo-ollama-version)
  url=$ollama_url${version:+?version=$version}
  log "installing Ollama from $url"
  curl -fsSL --max-time 900 "$url" | zstd -d | tar -xf - -C "$root/usr/local"
}

# Ollama pulls into OLLAMA_MODELS through a server; the orchestrator starts its own later.
pull_ollama_model() {
  local pid try
  "${service[@]}" ollama serve >"$state/ollama-pull.log" 2>&1 &
  pid=$!
  for ((try = 0; try < 60; try++)); do
    if as_service ollama list >/dev/null 2>&1; then
      break
    fi
    sleep 1
  done
  if ! as_service ollama pull "$1"; then
    log "warning: ollama pull $1 failed; the server pulls it at its first start"
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

install_personaplex() {
  local repo src=$state/personaplex-src
  if [ -z "$hf_token" ]; then
    log "warning: the profile runs PersonaPlex but no HF token secret is set (deploy.sh makes" \
      "it from HF_TOKEN): its gated weights are not fetched, /health will name them"
    return 0
  fi
  repo=$(attr vo-personaplex-repo https://github.com/NVIDIA/personaplex.git)
  if [ -d "$src/.git" ]; then
    as_service git -C "$src" pull --ff-only || log "warning: could not update $src"
  else
    as_service git clone --depth 1 "$repo" "$src"
  fi
  if ! (export HF_TOKEN=$hf_token &&
    as_service "$py" -m orchestrator install personaplex --source "$src" --weights \
      --config "$etc/server.toml"); then
    log "warning: installing PersonaPlex failed; sessions go to the cascade until it is done"
  fi
}

setup_host() {
  local profile port price name host_key token_secret adapter model
  profile=$(plain vo-profile "$(attr vo-profile t4-16gb)")
  port=$(number vo-api-port "$(attr vo-api-port 11400)")
  price=$(number vo-usd-per-hour "$(attr vo-usd-per-hour 0)")
  host_packages+=(ubuntu-drivers-common zstd libopus0 libopus-dev)
  install_packages "${host_packages[@]}"
  install_driver
  install_source
  install_venv run

  name=$(plain vo-host-key-secret "$(attr vo-host-key-secret)")
  host_key=$(plain "the host key" "$(secret "$name")")
  token_secret=$(attr vo-hf-token-secret)
  hf_token=""
  if [ -n "$token_secret" ]; then
    hf_token=$(plain "the HF token" "$(secret "$token_secret")")
  fi

  mkdir -p "$etc"
  chmod 0755 "$etc"
  write_public "$etc/server.toml" <<EOF
# Written by deploy/gcp/startup.sh at every boot from the instance's metadata (set by
# deploy/gcp's Terraform): change the Terraform variables, not this file.
profile = "$profile"

[server]
api_port = $port

[costs]
usd_per_hour = $price
EOF
  {
    echo "VO_GATEWAY_KEYS=$host_key"
    if [ -n "$hf_token" ]; then
      echo "HF_TOKEN=$hf_token"
    fi
  } | write_private "$etc/server.env"

  # The weights on disk before the first request, so that a wake loads and never downloads.
  if ! as_service "$py" -m orchestrator download --config "$etc/server.toml"; then
    log "warning: some models did not download; the server fetches what is missing at start"
  fi
  while read -r adapter model; do
    case $adapter in
      ollama)
        install_ollama
        pull_ollama_model "$model"
        ;;
      personaplex) install_personaplex ;;
    esac
  done < <(profile_engines "$profile")

  install_unit voice-orchestrator.service
  log "the GPU host is set up: profile $profile on port $port"
}

# -- the gateway -------------------------------------------------------------------------------

setup_gateway() {
  local domain host_name host_zone host_ip port stop_after price bridge name api_key host_key
  domain=$(plain vo-domain "$(attr vo-domain)")
  host_name=$(plain vo-host-name "$(attr vo-host-name)")
  host_zone=$(plain vo-host-zone "$(attr vo-host-zone)")
  host_ip=$(plain vo-host-ip "$(attr vo-host-ip)")
  port=$(number vo-api-port "$(attr vo-api-port 11400)")
  stop_after=$(number vo-stop-after-s "$(attr vo-stop-after-s 600)")
  price=$(number vo-usd-per-hour "$(attr vo-usd-per-hour 0)")
  bridge=$(attr vo-bridge false)
  [ "$bridge" = true ] || bridge=false
  install_packages "${host_packages[@]}" caddy
  install_source
  install_venv gateway

  name=$(plain vo-api-key-secret "$(attr vo-api-key-secret)")
  api_key=$(plain "the API key" "$(secret "$name")")
  name=$(plain vo-host-key-secret "$(attr vo-host-key-secret)")
  host_key=$(plain "the host key" "$(secret "$name")")

  mkdir -p "$etc"
  chmod 0755 "$etc"
  write_public "$etc/gateway.toml" <<EOF
# Written by deploy/gcp/startup.sh at every boot from the instance's metadata (set by
# deploy/gcp's Terraform): change the Terraform variables, not this file.
[gateway]
host = "127.0.0.1"            # Caddy, on this VM, is the public side (TLS on 443)
port = 11500
stop_after_s = $stop_after
usd_per_hour = $price

[gateway.bridge]
enabled = $bridge

[gateway.provider]
kind = "gcp"
project = "$project"
instances = [{ zone = "$host_zone", name = "$host_name" }]
port = $port
EOF
  {
    echo "VO_API_KEYS=$api_key"
    echo "VO_GATEWAY_HOST_KEY=$host_key"
  } | write_private "$etc/gateway.env"

  if [ "$bridge" = true ] &&
    ! as_service "$py" -m orchestrator download --profile cpu; then
    log "warning: the bridge's models did not all download; it fetches them at its start"
  fi

  mkdir -p "$root/etc/caddy"
  write_public "$root/etc/caddy/Caddyfile" <<EOF
# Written by deploy/gcp/startup.sh: HTTPS for $domain (Let's Encrypt over TLS-ALPN on 443),
# everything passed to the gateway, WebSockets and server-sent events included.
$domain {
	reverse_proxy 127.0.0.1:11500
}
EOF
  systemctl enable caddy
  systemctl reload-or-restart caddy
  wait_for_first_host_setup "$host_ip" "$port"
  install_unit voice-orchestrator-gateway.service
  log "the gateway is set up: https://$domain in front of $host_zone/$host_name"
}

# Terraform starts both VMs at once, and the host's first boot (driver, CUDA torch, models)
# takes 15-30 minutes. A gateway up meanwhile would find the host idle and stop it half
# installed, so on its own first boot the gateway waits until the host's server answers.
wait_for_first_host_setup() {
  local marker=$state/.vo-host-seen-ready waited=0 limit=${VO_HOST_SETUP_WAIT_S:-3600}
  if [ -e "$marker" ]; then
    return 0
  fi
  log "waiting for the GPU host's first setup (http://$1:$2/health/live)"
  until curl -fsS --max-time 5 -o /dev/null "http://$1:$2/health/live"; do
    if ((waited >= limit)); then
      log "warning: the host's server did not answer in ${limit} s; starting the gateway anyway"
      return 0
    fi
    sleep 10
    waited=$((waited + 10))
  done
  touch "$marker"
}

main() {
  local role
  role=$(attr vo-role)
  project=$(plain project "$(metadata project/project-id)")
  host_packages=(ca-certificates curl git python3 python3-venv python3-dev build-essential)
  case $role in
    host)
      ensure_user
      setup_host
      ;;
    gateway)
      ensure_user
      setup_gateway
      ;;
    *) die "instance attribute vo-role is '$role', not host or gateway" ;;
  esac
}

main "$@"
