"""The `qa_exact_match` evaluate module; its math is in `answer_core`."""
