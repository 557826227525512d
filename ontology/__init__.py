"""Cell Ontology, UBERON and MONDO: resolve names, walk ancestors and descendants."""
