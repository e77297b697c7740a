"""The actors: the plant model (Mesa registry over the plant graph), equipment agents with
PackML state machines, sources and sinks. Imports only from :mod:`darkfab.factory`."""
