"""CDA R2: reading a document header (:mod:`.header`), checking it against the DocumentEntry
that describes it (:mod:`.consistency`, the server's side) and deriving that DocumentEntry from
it (:mod:`.metadata`, the producer's side)."""
