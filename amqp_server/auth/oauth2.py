"""rabbit_auth_backend_oauth2: JWT access tokens passed as the password.

A token is verified with the signing key its ``kid`` header names (``auth_oauth2.signing_keys.ID``,
a PEM public key file: RS*/PS* for RSA keys, ES* for EC keys; a file that is no PEM key is a
shared secret for HS*), or ``auth_oauth2.default_key`` when it names none. Its ``aud`` must
contain ``auth_oauth2.resource_server_id`` (unless ``auth_oauth2.verify_aud = false``); of its
scopes (``scope``, plus ``auth_oauth2.additional_scopes_key``) only those prefixed with the
resource server id and a dot count, and ``scopes`` maps them to permissions and tags. The user is
named by the token's ``client_id``, else ``sub``, else the username given. Checks are immediate
(no request is made); a token past its ``exp`` grants nothing, and the connection is closed
when it expires unless ``connection.update-secret`` gave it a new one.

Verification is PyJWT's (with ``cryptography`` for the RSA and EC signatures), as RabbitMQ
uses the jose library.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from amqp_server.auth import scopes
from amqp_server.auth.backend import AuthUser, ConnectionInfo, LoginResult, Refusal
from amqp_server.auth.config import EC_ALGORITHMS, HMAC_ALGORITHMS, OAUTH2, RSA_ALGORITHMS, AuthConfig

log = logging.getLogger(__name__)

INVALID = "Authentication using an OAuth 2/JWT token failed: provided token is invalid"
FAILED = "Authentication using an OAuth 2/JWT token failed: {}"


@dataclass(frozen=True)
class SigningKey:
    key: Any  # a cryptography public key, or the shared secret's bytes
    algorithms: list[str]


def load_signing_key(path: str, allowed: list[str]) -> SigningKey:
    """A key file: a PEM public key (RSA or EC), or else a shared secret (its stripped bytes).
    An unreadable file raises OSError; the start stops on it."""
    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        key = load_pem_public_key(data)
        algorithms = RSA_ALGORITHMS if isinstance(key, rsa.RSAPublicKey) else EC_ALGORITHMS
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError(f"{path}: not an RSA or EC public key")
    else:
        key, algorithms = data.strip(), HMAC_ALGORITHMS
    return SigningKey(key, [a for a in algorithms if not allowed or a in allowed])


@dataclass
class Token:
    """A verified token: its claims (``scope`` filtered and without the resource server prefix)."""

    claims: dict[str, Any]
    scopes: list[str]

    @property
    def expires_at(self) -> float | None:
        exp = self.claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None

    def expired(self) -> bool:
        exp = self.expires_at
        return exp is not None and exp <= time.time()


class OAuth2Backend:
    name = OAUTH2

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.keys = {
            kid: load_signing_key(path, config.oauth2_algorithms)
            for kid, path in config.oauth2_signing_keys.items()
        }

    def authenticate(self, username: str, password: str | None, info: ConnectionInfo) -> LoginResult:
        token = self.check_token(password or "")
        if isinstance(token, Refusal):
            return token
        if token.expired():
            return Refusal(FAILED.format(_expired(token)))
        claims = token.claims
        name = claims.get("client_id") or claims.get("sub") or username
        return AuthUser(str(name), scopes.tags(token.scopes), token)

    authorize = authenticate

    def check_vhost(self, user: AuthUser, vhost: str, ip: str) -> bool:
        token = _live(user)
        return token is not None and scopes.vhost_access(vhost, token.scopes)

    def check_resource(self, user: AuthUser, vhost: str, resource: str, name: str, permission: str) -> bool:
        token = _live(user)
        return token is not None and scopes.resource_access(vhost, name, permission, token.scopes)

    def check_topic(
        self,
        user: AuthUser,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        variables: dict[str, str],
    ) -> bool:
        token = _live(user)
        return token is not None and scopes.topic_access(
            vhost, exchange, routing_key, permission, token.scopes
        )

    def expires_at(self, user: AuthUser) -> float | None:
        return user.impl.expires_at

    def update_secret(self, user: AuthUser, secret: str) -> LoginResult:
        """update_state: a valid new token replaces the old one (its expiry is not checked here:
        an expired one closes the connection at once, as its expiry timer fires)."""
        token = self.check_token(secret)
        if isinstance(token, Refusal):
            return token
        return AuthUser(user.name, scopes.tags(token.scopes), token)

    def check_token(self, raw: str) -> Token | Refusal:
        """uaa_jwt:decode_and_verify and validate_payload: the signature, the audience, the scopes."""
        try:
            kid = jwt.get_unverified_header(raw).get("kid") or self.config.oauth2_default_key
        except jwt.PyJWTError:
            return Refusal(INVALID)
        if not kid:
            return Refusal(FAILED.format("{error,no_key}"))
        key = self.keys.get(kid)
        if key is None:
            return Refusal(FAILED.format("{error,key_not_found}"))
        try:
            claims = jwt.decode(raw, key.key, algorithms=key.algorithms,
                                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False})  # fmt: skip
        except jwt.InvalidSignatureError:
            return Refusal(FAILED.format("signature_invalid"))
        except jwt.PyJWTError:
            return Refusal(INVALID)
        granted = self._scopes(claims)
        server = self.config.oauth2_resource_server_id
        if server and self.config.oauth2_verify_aud:
            aud = claims.get("aud")
            audience = aud.split() if isinstance(aud, str) else aud
            if not isinstance(audience, list) or server not in audience:
                return Refusal(
                    FAILED.format(f"{{invalid_aud,{{resource_id_not_found_in_aud,{server},{aud}}}}}")
                )
        if server:
            granted = scopes.without_prefix(granted, server + ".")
        return Token(claims, granted)

    def _scopes(self, claims: dict[str, Any]) -> list[str]:
        """``scope`` (a list, or a string of space-separated scopes) with the additional ones
        (post_process_payload_with_complex_claim) in front."""
        granted = _words(claims.get("scope"))
        extra_key = self.config.oauth2_additional_scopes_key
        extra = claims.get(extra_key) if extra_key else None
        server = self.config.oauth2_resource_server_id
        if isinstance(extra, dict):
            value = extra.get(server)
            extra = [f"{server}.{scope}" for scope in _words(value)] if value is not None else []
        return _words(extra) + granted


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def _live(user: AuthUser) -> Token | None:
    """with_decoded_token: an expired token grants nothing."""
    token: Token = user.impl
    if token.expired():
        log.error("%s", _expired(token))
        return None
    return token


def _expired(token: Token) -> str:
    return f"Provided JWT token has expired at timestamp {token.claims.get('exp')} (validated at {int(time.time())})"
