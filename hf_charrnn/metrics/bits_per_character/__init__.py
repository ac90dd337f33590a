# Holds the `evaluate` module bits_per_character.py; load it with evaluate.load(hf_charrnn.evaluation.metric_path()).
