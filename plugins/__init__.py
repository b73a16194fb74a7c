"""Plugins bundled with the broker, each written exactly as a third-party package writes one:
a module exposing ``PLUGIN = amqp_server.plugin_api.Plugin(...)``, named in the
``amqp_server.plugins`` entry-point group (see docs/plugins.md). They are off until enabled
(``amqp-plugins enable NAME``, or ``BrokerConfig.plugins`` for an embedded broker).
"""
