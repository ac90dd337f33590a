"""hf_charrnn: classic recurrent language models for the Hugging Face ecosystem."""
