"""The retrieval-tuning tool: evaluation sets, metrics, sweeps over the knobs, reports."""
