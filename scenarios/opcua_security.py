"""Security of ``darkfab serve`` and ``darkfab supervise``, from asyncua's own support.

Server (:class:`Security`):

- **users** (``--user NAME:PASSWORD``, repeatable, or ``--users-file FILE`` with one
  ``NAME:PASSWORD`` a line; blank lines and ``#`` comments skipped): the server accepts only
  the user-name identity token, checks the password (constant-time comparison), and refuses
  anonymous clients (``BadIdentityTokenRejected``) and wrong passwords
  (``BadUserAccessDenied``);
- **certificate** (``--cert PEM --key PEM``): the only endpoint is Basic256Sha256
  SignAndEncrypt, so a client without a certificate cannot open a channel, and user names
  and passwords travel encrypted. Without ``--cert``, a password crosses the network in
  plain text: use ``--user`` without ``--cert`` on 127.0.0.1 only;
- **trusted client certificates** (``--trust PEM``, repeatable, with ``--cert``): a client
  whose identity is one of these certificates (X509 identity token, signed with its key) is
  accepted; another certificate is refused (``BadUserAccessDenied``).

With any of these, anonymous clients are refused; ``--cert`` alone is refused as a usage error
(it would encrypt the channel but let anyone with a self-made certificate in).

Client (:func:`client_security`): ``--user NAME:PASSWORD``; ``--cert PEM --key PEM`` (and
optionally ``--server-cert PEM``, else the server's certificate is taken from its endpoint
description) for Basic256Sha256 SignAndEncrypt; without ``--user`` the certificate is also the
client's identity.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Client, Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.server.user_managers import UserManager

__all__ = ["Security", "PasswordUsers", "server_security", "client_security", "parse_user"]


class PasswordUsers(UserManager):
    """asyncua user manager: the given user names with their passwords, and the clients whose
    identity certificate (DER) is trusted; nobody else (no anonymous client)."""

    def __init__(self, users: dict[str, str], trusted: dict[bytes, str] | None = None) -> None:
        self.users = dict(users)
        self.trusted = dict(trusted or {})  # DER -> a name for the log

    def get_user(self, iserver: Any, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> User | None:
        if username is None:  # an X509 identity (or anonymous: no certificate)
            name = self.trusted.get(bytes(certificate)) if certificate else None
            return None if name is None else User(role=UserRole.User, name=name)
        if username not in self.users:
            return None
        given = (password or "").encode() if not isinstance(password, bytes) else password
        if not hmac.compare_digest(given, self.users[username].encode()):
            return None
        return User(role=UserRole.User, name=username)


@dataclass
class Security:
    """What the server requires: ``users`` (name -> password; empty: anonymous allowed) and a
    certificate with its private key (``None``: no encryption)."""

    users: dict[str, str] = field(default_factory=dict)
    cert: Path | None = None
    key: Path | None = None
    trust: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._manager = PasswordUsers(self.users)

    def user_manager(self) -> UserManager:
        return self._manager

    async def apply(self, server: Server) -> None:
        """Configure ``server`` (after ``init``, before ``start``)."""
        if self.cert is not None and self.key is not None:
            await server.load_certificate(str(self.cert))
            await server.load_private_key(str(self.key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        for p in self.trust:
            der = uacrypto.der_from_x509(await uacrypto.load_certificate(str(p)))
            self._manager.trusted[der] = p.stem
        tokens: list[type] = []
        if self.users:
            tokens.append(ua.UserNameIdentityToken)
        if self.trust:
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens)  # never anonymous

    def describe(self) -> str:
        parts = []
        if self.users:
            parts.append(f"{len(self.users)} user(s), anonymous refused")
        if self.trust:
            parts.append(f"{len(self.trust)} trusted client certificate(s)")
        if self.cert is not None:
            parts.append("Basic256Sha256 SignAndEncrypt")
        return ", ".join(parts)


def parse_user(text: str) -> tuple[str, str] | None:
    """``NAME:PASSWORD`` -> (name, password); ``None`` if malformed."""
    name, sep, pwd = text.partition(":")
    if not sep or not name.strip() or not pwd:
        return None
    return name.strip(), pwd


def _cert_pair(args, problems: list[str]) -> tuple[Path | None, Path | None]:
    cert, key = args.cert, args.key
    if (cert is None) != (key is None):
        problems.append("--cert/--key: give both (the certificate and its private key)")
        return None, None
    for opt, p in (("--cert", cert), ("--key", key)):
        if p is not None and not p.is_file():
            problems.append(f"{opt}: no such file: {p}")
    return cert, key


def server_security(args, problems: list[str]) -> Security | None:
    """The server's :class:`Security` from ``--user``, ``--users-file``, ``--cert``,
    ``--key`` (``None``: none asked); a problem line per bad option."""
    users: dict[str, str] = {}
    for u in args.users:
        pair = parse_user(u)
        if pair is None:
            problems.append(f"--user: {u.partition(':')[0]!r}: expected NAME:PASSWORD")
        else:
            users[pair[0]] = pair[1]
    if args.users_file is not None:
        try:
            lines = args.users_file.read_text().splitlines()
        except OSError as e:
            problems.append(f"--users-file: {e.strerror or e}: {args.users_file}")
            lines = []
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pair = parse_user(line)
            if pair is None:
                problems.append(f"--users-file: {args.users_file}:{n}: expected NAME:PASSWORD")
            else:
                users[pair[0]] = pair[1]
    cert, key = _cert_pair(args, problems)
    trust = list(args.trust)
    for p in trust:
        if not p.is_file():
            problems.append(f"--trust: no such file: {p}")
    if trust and cert is None:
        problems.append("--trust: needs --cert/--key (a client proves its certificate over "
                        "an encrypted channel)")
    if cert is not None and not users and not trust:
        problems.append("--cert: also give --user/--users-file or --trust PEM: who may "
                        "connect (a certificate alone encrypts, but lets anyone in)")
    if not users and cert is None:
        return None
    return Security(users, cert, key, trust)


def client_security(args, problems: list[str]):
    """A coroutine function that configures an asyncua :class:`Client` from ``--user``,
    ``--cert``, ``--key``, ``--server-cert`` (``None``: nothing to configure)."""
    user = None
    if args.user is not None:
        user = parse_user(args.user)
        if user is None:
            problems.append(f"--user: {args.user.partition(':')[0]!r}: expected NAME:PASSWORD")
    cert, key = _cert_pair(args, problems)
    server_cert = args.server_cert
    if server_cert is not None and not server_cert.is_file():
        problems.append(f"--server-cert: no such file: {server_cert}")
    if user is None and cert is None:
        return None

    async def configure(client: Client) -> None:
        if user is not None:
            client.set_user(user[0])
            client.set_password(user[1])
        if cert is not None:
            await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                                      server_certificate=None if server_cert is None
                                      else str(server_cert),
                                      mode=ua.MessageSecurityMode.SignAndEncrypt)
            if user is None:  # the certificate is also who we are
                await client.load_client_certificate(str(cert))
                await client.load_private_key(key)
    return configure
