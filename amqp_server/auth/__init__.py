"""Authentication and authorisation backends, as RabbitMQ chains them (``auth_backends.N``).

``backend`` is the interface, ``internal`` the users and permissions of the node (the default,
and the only backend that answers without waiting), ``http`` rabbit_auth_backend_http, ``oauth2``
rabbit_auth_backend_oauth2 (JWT access tokens, ``scopes`` maps their scopes), ``cache``
rabbit_auth_backend_cache, and ``chain`` the list of them a login goes through and the logged-in
user whose checks channels make (see docs/security.md).
"""
