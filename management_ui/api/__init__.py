"""The API's resources, one module per kind of resource, each with its ``ROUTES``: (path
under /api, resource). Registered in this order: a fixed path comes before a pattern that
would match it (``/users/bulk-delete`` before ``/users/{user}``)."""

from management_ui.api import (
    bindings,
    channels,
    connections,
    consumers,
    definitions,
    exchanges,
    extensions,
    health,
    limits,
    nodes,
    overview,
    parameters,
    permissions,
    policies,
    queues,
    users,
    vhosts,
)

MODULES = (
    overview,
    extensions,
    nodes,
    connections,
    channels,
    consumers,
    exchanges,
    queues,
    bindings,
    vhosts,
    users,
    permissions,
    policies,
    parameters,
    limits,
    definitions,
    health,
)
