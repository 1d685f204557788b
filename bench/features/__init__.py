"""The feature jobs (enrich, embed): Ray Data overhead, catalog scaling, streaming memory, what an enrichment adds."""
