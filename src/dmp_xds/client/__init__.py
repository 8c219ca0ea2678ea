"""The project's XDS client (tests, CLI, benchmarks): ``transport`` speaks SOAP with streamed
MTOM both ways, ``xds`` wraps ITI-41/42/18/43 payloads and reads their responses."""
