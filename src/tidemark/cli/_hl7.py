"""`tidemark hl7 ...`: the HL7 v2 ADT ingest example of tracked entity updates."""
