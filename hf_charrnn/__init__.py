"""hf_charrnn: classic recurrent language models (LSTM, GRU, RNN) as first-class Hugging Face models.

Importing the package registers the model with transformers' Auto classes, so `AutoConfig`, `AutoModel` and
`AutoModelForCausalLM` load CharRNN checkpoints, and marks the classes for `trust_remote_code` export, so a saved
folder or Hub repo also loads where hf_charrnn is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_charrnn import CharRNNConfig
from .modeling_charrnn import (
    CharRNNCache,
    CharRNNCausalLMOutput,
    CharRNNForCausalLM,
    CharRNNModel,
    CharRNNModelOutput,
    CharRNNPreTrainedModel,
)

AutoConfig.register(CharRNNConfig.model_type, CharRNNConfig, exist_ok=True)
AutoModel.register(CharRNNConfig, CharRNNModel, exist_ok=True)
AutoModelForCausalLM.register(CharRNNConfig, CharRNNForCausalLM, exist_ok=True)

CharRNNConfig.register_for_auto_class()
CharRNNModel.register_for_auto_class("AutoModel")
CharRNNForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__version__ = "0.1.0"

__all__ = [
    "CharRNNCache",
    "CharRNNCausalLMOutput",
    "CharRNNConfig",
    "CharRNNForCausalLM",
    "CharRNNModel",
    "CharRNNModelOutput",
    "CharRNNPreTrainedModel",
]
