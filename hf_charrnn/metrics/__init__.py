"""`evaluate` metric modules shipped with hf_charrnn (load them with ``evaluate.load(path)``; see
``hf_charrnn.evaluation.metric_path``)."""
