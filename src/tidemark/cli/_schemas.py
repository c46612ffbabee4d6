"""`tidemark schemas ...`: convert FHIR packages to FHIRSchema and validate resources."""
