"""The README's library examples run as written, on whichever end of the supported transformers range is installed.

CI runs this file with the pinned set and again with the floor (make test-floor), so examples written with the
current names (`cache`) must also work where transformers still calls the state `past_key_values`.
"""

import subprocess
import sys

from testing_utils import python_blocks


def test_the_library_examples_run_as_written_without_deprecation_warnings(tmp_path):
    blocks = python_blocks("Using the library")
    assert len(blocks) >= 2 and any("cache=first.cache" in block for block in blocks)
    result = subprocess.run(
        [sys.executable, "-W", "always::FutureWarning", "-c", "\n".join(blocks)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.startswith("hello")  # the pipeline's generated text starts with the prompt
    assert "past_key_values" not in result.stderr and "deprecated" not in result.stderr.lower()
    assert (tmp_path / "my-model" / "model.safetensors").is_file()


def test_the_explain_example_runs_on_the_library_examples_model(tmp_path):
    blocks = python_blocks("Using the library") + python_blocks("Seeing inside a model")
    assert any("activations(model" in block for block in blocks)
    result = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "torch.Size([42, 512])" in result.stdout and "UnitCorrelation(layer=" in result.stdout
