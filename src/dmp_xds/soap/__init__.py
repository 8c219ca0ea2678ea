"""Our own SOAP layer on lxml (DESIGN.md: spyne could not do MTOM, WS-Addressing or 3.12+).

``xmlparser`` is the hardened parse, ``mtom`` streams multipart/related in and out with
attachments spooled and hashed on disk, ``envelope`` reads requests (versions, WS-Addressing,
mustUnderstand, limits) and writes responses and faults.
"""
