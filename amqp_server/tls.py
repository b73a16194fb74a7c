"""TLS for the AMQP listeners: RabbitMQ's ``ssl_options.*`` made into an ``ssl.SSLContext``,
reloaded in place when certificates are rotated, and the login a client certificate gives
(rabbitmq_auth_mechanism_ssl's ``ssl_cert_login_from``). The links between cluster nodes take
the same options for both of their ends (``server_context`` and ``client_context``), the HTTP
auth backend's requests to https URLs a client context of their own (``auth_http.ssl_options``).

Everything here is the standard library's ``ssl``: OpenSSL does the protocol; this module only
translates RabbitMQ's settings into it.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

#: ``ssl_options.versions.N`` values, as RabbitMQ (Erlang's ssl) names them.
TLS_VERSIONS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
#: What a listener accepts when ``ssl_options.versions`` is not set: TLS 1.2 and 1.3 only.
DEFAULT_VERSIONS = ("tlsv1.2", "tlsv1.3")
#: RFC 4514 short names of the attributes a certificate subject usually carries, as RabbitMQ
#: prints a distinguished name (``CN=guest,O=client,L=...``).
DN_NAMES = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "localityName": "L",
    "stateOrProvinceName": "ST", "countryName": "C", "emailAddress": "emailAddress",
    "domainComponent": "DC", "streetAddress": "STREET", "userId": "UID",
}  # fmt: skip


class TlsError(Exception):
    """Settings that cannot make a TLS context (a missing or unreadable file, a bad key
    password, an unknown cipher); the message names the setting."""


@dataclass
class TlsOptions:
    """RabbitMQ's ``ssl_options``: file paths, peer verification, protocol versions, ciphers."""

    cacertfile: str = ""
    certfile: str = ""
    keyfile: str = ""
    password: str = ""
    verify: str = "verify_none"  # or verify_peer
    fail_if_no_peer_cert: bool = False
    # Accepted for RabbitMQ's configs; Python's ssl has no verify-depth setter, so OpenSSL's
    # default (100 intermediates) applies.
    depth: int | None = None
    versions: list[str] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)
    honor_cipher_order: bool = False
    # A client's only (Erlang's client option): the name the peer's certificate must carry and
    # that is sent as SNI; "" the host dialed, "disable" no host name check.
    server_name_indication: str = ""


def server_context(options: TlsOptions) -> ssl.SSLContext:
    """A server context for ``options``; raises TlsError naming what is wrong."""
    context = _context(ssl.PROTOCOL_TLS_SERVER, options)
    if options.honor_cipher_order:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if options.verify == "verify_peer":
        # Erlang's fail_if_no_peer_cert=false asks for a certificate but takes a client without one.
        context.verify_mode = ssl.CERT_REQUIRED if options.fail_if_no_peer_cert else ssl.CERT_OPTIONAL
    load_files(context, options)
    return context


def client_context(options: TlsOptions, certificate: bool = True) -> ssl.SSLContext:
    """A client context for ``options`` (a node dialing its peers, the HTTP auth backend):
    ``verify_peer`` checks the server's chain against ``cacertfile`` (the system's CAs without
    one) and its host name unless ``server_name_indication = disable``; ``verify_none`` checks
    nothing. ``certificate``: a ``certfile`` is required (else presented only when set).
    TlsError as above."""
    context = _context(ssl.PROTOCOL_TLS_CLIENT, options)
    verify = options.verify == "verify_peer"
    context.check_hostname = verify and options.server_name_indication != "disable"
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    load_files(context, options, certificate)
    if verify and not options.cacertfile:
        context.load_default_certs()
    return context


def _context(protocol: ssl._SSLMethod, options: TlsOptions) -> ssl.SSLContext:
    """A context with the versions and ciphers of ``options``."""
    context = ssl.SSLContext(protocol)
    versions = sorted(TLS_VERSIONS[v] for v in (options.versions or DEFAULT_VERSIONS))
    context.minimum_version, context.maximum_version = versions[0], versions[-1]
    if options.ciphers:
        try:
            context.set_ciphers(":".join(options.ciphers))
        except ssl.SSLError as exc:
            raise TlsError(f"ssl_options.ciphers: no usable cipher in {options.ciphers}") from exc
    return context


def load_files(context: ssl.SSLContext, options: TlsOptions, certificate: bool = True) -> None:
    """(Re)load the certificate, key and CA files into ``context``: handshakes from then on use
    them, established connections keep theirs (how certificates are rotated without a restart).
    ``certificate`` False: no ``certfile`` is fine (a client that presents none)."""
    if not options.certfile and certificate:
        raise TlsError("ssl_options.certfile is not set: a TLS listener needs a certificate")
    if not options.certfile and options.keyfile:
        raise TlsError("ssl_options.certfile is not set: keyfile is the key of a certificate")
    try:
        if options.certfile:
            context.load_cert_chain(options.certfile, options.keyfile or None, options.password or None)
    except FileNotFoundError as exc:  # (load_cert_chain does not say which file)
        files = (options.certfile, options.keyfile)
        missing = exc.filename or next((f for f in files if f and not os.path.exists(f)), "")
        raise TlsError(f"ssl_options: cannot read {missing}: {exc.strerror}") from exc
    except ssl.SSLError as exc:
        raise TlsError(f"ssl_options.certfile/keyfile: {exc.reason or exc}") from exc
    if options.cacertfile:
        try:
            context.load_verify_locations(options.cacertfile)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"ssl_options.cacertfile: cannot load {options.cacertfile}: {exc}") from exc


def distinguished_name(subject: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """A certificate subject (``getpeercert()["subject"]``) as RabbitMQ prints it for
    ``ssl_cert_login_from = distinguished_name``: RFC 4514, most specific attribute first."""
    parts = [f"{DN_NAMES.get(name, name)}={value}" for rdn in subject for name, value in rdn]
    return ",".join(reversed(parts))


def certificate_login(peercert: dict[str, Any] | None, login_from: str) -> str | None:
    """The user name a verified client certificate logs in as: its subject's common name
    (``common_name``, RabbitMQ's default) or its whole distinguished name; None without one."""
    if not peercert:
        return None
    subject = peercert.get("subject", ())
    if login_from == "distinguished_name":
        return distinguished_name(subject) or None
    names = [value for rdn in subject for name, value in rdn if name == "commonName"]
    return names[0] if names else None


def describe(exc: BaseException) -> str:
    """An exception as a log line shows it."""
    return tidy(str(exc) or type(exc).__name__)


def tidy(reason: str) -> str:
    """OpenSSL's words without the source line they come with."""
    return re.sub(r" \(_ssl\.c:[0-9]+\)$", "", reason)
