"""The chat template the engine applies (picaco/llm/chat_template.py): read from the GGUF, or a Jinja file."""

from __future__ import annotations

from picaco.llm.chat_template import load_template, template_from_gguf
from picaco.llm.local_engine import smollm2_path
from picaco.llm.logprobs import render_pair
from picaco.llm.request import Message


def test_the_gguf_template_is_smollm2s_own_with_its_default_system_prompt():
    template = template_from_gguf(smollm2_path())
    assert (template.bos_token, template.eos_token) == ("<|im_start|>", "<|im_end|>")
    prefix, full = render_pair(template, (Message(role="user", content="Name a fruit."),), "Apple.")
    assert prefix.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prefix.endswith("<|im_start|>assistant\n") and full == prefix + "Apple.<|im_end|>\n"


def test_a_jinja_file_is_a_template(tmp_path):
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}>{% endif %}")
    template = load_template(jinja, "<s>", "</s>")
    assert template.render([{"role": "user", "content": "x"}], True) == "x>"
    assert template.render([{"role": "user", "content": "x"}], False) == "x"
    assert (template.bos_token, template.eos_token) == ("<s>", "</s>")
