"""The `retrieval_ranking` evaluate module; its math is in `ranking_core`."""
