"""Plugins bundled with the broker, each written exactly as a third-party package writes one.

A plugin is an ``exchanges.base.ExchangeType`` subclass made known through the
``amqp_server.exchange_types`` entry-point group of its distribution (see docs/plugins.md).
``exchanges.registry.register`` registers one in-process instead (tests, embedding).
"""
