"""CDA R2: reading a document header (:mod:`.header`) and checking it against the
DocumentEntry that describes it (:mod:`.consistency`)."""
