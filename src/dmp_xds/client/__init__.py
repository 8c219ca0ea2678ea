"""The project's XDS client (tests, CLI, benchmarks): ``transport`` speaks SOAP with streamed
MTOM both ways, ``xds`` wraps ITI-41/42/18/43 payloads and reads their responses, ``vihf``
signs the VIHF of each call. For the ``dmp-xds`` client commands: ``identity`` (who acts),
``submission`` (ebRIM from metadata, sidecar overrides), ``sources`` (documents of a folder or
zip), ``journal`` and ``importer`` (``dmp-xds import``), ``commands`` (the CLI side)."""
