"""The audit trail: every call, allowed or refused, and what it touched (by identifier only).

``trail`` records events (the database table is the source of truth); ``traces`` reads a
patient's trail; ``service`` serves it to software (``/dmp/Traces``); ``atna`` renders an event
as a DICOM audit message and ``export`` sends those to an ATNA collector, off the request path.
"""
