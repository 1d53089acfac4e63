"""The console's sign-in password: what is accepted, and scrypt hashes to configure one.

Accepted, either of:
  the console password      ``VO_CONSOLE_PASSWORD``, else ``<state.dir>/console_password``
                            (generated, mode 0600); the CLI's ``wake``/``hibernate`` use it
  ``VO_CONSOLE_PASSWORD_HASH``  a password of the operator's choosing, stored only as a hash

A hash is one self-describing string, ``scrypt$<log2 n>$<r>$<p>$<salt>$<digest>`` (salt and
digest in unpadded URL-safe base64). Make one with ``python -m console.password``: it asks for
the password twice (or reads one line from stdin with ``--stdin``) and prints the line to export.
Checking a hash takes ~50 ms of CPU on purpose: callers run it in a worker thread.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass

SCHEME = "scrypt"
HASH_ENV = "VO_CONSOLE_PASSWORD_HASH"
LOG2_N, R, P = 14, 8, 1  # 16 MiB and ~50 ms per check on one core
DIGEST_BYTES = 32
MAX_LOG2_N = 20  # a configured hash may be slower, never absurd


def b64(data: bytes) -> str:
    """URL-safe base64 without padding, for hashes and signed cookies."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PasswordHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Read a hash string; ``ValueError`` says what is wrong with it (never the value)."""
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError(f"expected {SCHEME}$<log2 n>$<r>$<p>$<salt>$<digest>")
        try:
            log2_n, r, p = (int(part) for part in parts[1:4])
            salt, digest = unb64(parts[4]), unb64(parts[5])
        except ValueError:
            raise ValueError("cost numbers or base64 parts are malformed") from None
        if not (1 <= log2_n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError(f"cost out of range (log2 n 1..{MAX_LOG2_N}, r 1..32, p 1..16)")
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("salt or digest too short")
        return cls(log2_n, r, p, salt, digest)

    def _derive(self, password: str, length: int) -> bytes:
        n = 1 << self.log2_n
        return hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=n,
            r=self.r,
            p=self.p,
            dklen=length,
            maxmem=132 * self.r * (n + self.p + 2) + (1 << 20),
        )

    def verify(self, candidate: str) -> bool:
        return hmac.compare_digest(self._derive(candidate, len(self.digest)), self.digest)

    def __str__(self) -> str:
        costs = f"{self.log2_n}${self.r}${self.p}"
        return f"{SCHEME}${costs}${b64(self.salt)}${b64(self.digest)}"


def hash_password(password: str, *, log2_n: int = LOG2_N) -> str:
    template = PasswordHash(log2_n, R, P, secrets.token_bytes(16), b"")
    digest = template._derive(password, DIGEST_BYTES)
    return str(PasswordHash(log2_n, R, P, template.salt, digest))


class PasswordCheck:
    """The passwords the console accepts. ``check`` may take ~50 ms: run it in a thread."""

    def __init__(self, plain: str | None, hashed: PasswordHash | None) -> None:
        if not plain and hashed is None:
            raise ValueError("no console password and no password hash")
        self._plain = plain
        self.hashed = hashed

    @classmethod
    def from_environment(cls, plain: str, environ: Mapping[str, str]) -> PasswordCheck:
        """The console password from ``Secrets``, and the hash from ``VO_CONSOLE_PASSWORD_HASH``
        when set; a malformed hash is a ``ValueError`` naming the variable."""
        text = environ.get(HASH_ENV, "").strip()
        try:
            hashed = PasswordHash.parse(text) if text else None
        except ValueError as exc:
            hint = "make one with python -m console.password"
            raise ValueError(f"{HASH_ENV}: {exc}; {hint}") from None
        return cls(plain, hashed)

    def check_plain(self, candidate: str) -> bool:
        """Only the console password (cheap): the CLI's HTTP Basic path tries this first."""
        if not self._plain:
            return False
        return hmac.compare_digest(candidate.encode(), self._plain.encode())

    def check(self, candidate: str) -> bool:
        ok = self.check_plain(candidate)
        if self.hashed is not None:
            ok |= self.hashed.verify(candidate)
        return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m console.password",
        description="Print a VO_CONSOLE_PASSWORD_HASH line for a console password of your choice.",
    )
    parser.add_argument("--stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2
    if len(password) < 8:
        print("error: use at least 8 characters", file=sys.stderr)
        return 2
    print(f"export {HASH_ENV}='{hash_password(password)}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
