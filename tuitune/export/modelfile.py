"""The Ollama `Modelfile` written beside a GGUF export: the file, its prompt template and stop tokens.

Ollama templates are Go templates, not Jinja: the common chat families are translated here; for
any other template the Modelfile says so and Ollama falls back to the template stored in the GGUF.
"""

from __future__ import annotations

# Ollama puts the SYSTEM prompt (or the conversation's own) into .Messages as a "system" message.
CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
          "<|im_start|>assistant\n")
LLAMA3 = ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
          "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")
GEMMA = ("{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n"
         "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n")
PHI3 = ("{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n")
MISTRAL = ("{{- range .Messages }}{{ if eq .Role \"user\" }}[INST] {{ .Content }} [/INST]"
           "{{ else }}{{ .Content }}</s>{{ end }}{{ end }}")

# (marker in the Jinja template, family, Go template), first match wins
FAMILIES = (("<|im_start|>", "ChatML", CHATML), ("<|start_header_id|>", "Llama 3", LLAMA3),
            ("<start_of_turn>", "Gemma", GEMMA), ("<|assistant|>", "Phi-3", PHI3), ("[INST]", "Mistral", MISTRAL))


def template_family(chat_template: str | None) -> tuple[str, str] | None:
    for marker, family, go_template in FAMILIES:
        if chat_template and marker in chat_template:
            return family, go_template
    return None


def default_system_prompt(tokenizer) -> str | None:
    """The system prompt the Jinja template adds when the conversation has none (SmolLM2 has one)."""
    if not tokenizer.chat_template:
        return None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}], tokenize=False)
    for start, end in (("<|im_start|>system\n", "<|im_end|>"), ("<|system|>\n", "<|end|>"),
                       ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>")):
        if start in text and text.index(start) < text.index("\x00"):
            body = text.split(start, 1)[1].split(end, 1)[0]
            return body.strip() or None
    return None


def modelfile(gguf_name: str, tokenizer, *, stops: list[str], system_prompt: str | None, settings) -> str:
    """The Modelfile text; `settings` (GenerationSettings) become PARAMETER lines."""
    lines = ["# Ollama: ollama create <name> -f Modelfile, then ollama run <name>", f"FROM ./{gguf_name}", ""]
    family = template_family(tokenizer.chat_template)
    if family is not None:
        lines += [f"# {family[0]} chat template (translated from the model's Jinja template)",
                  f'TEMPLATE """{family[1]}"""', ""]
    else:
        lines += ["# This chat template has no Go translation here; Ollama uses the template stored in the GGUF.", ""]
    system = system_prompt or default_system_prompt(tokenizer)
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines += [f"PARAMETER temperature {settings.temperature}", f"PARAMETER top_p {settings.top_p}",
              f"PARAMETER top_k {settings.top_k}", f"PARAMETER repeat_penalty {settings.repetition_penalty}"]
    return "\n".join(lines) + "\n"


def parse_stops(text: str) -> list[str]:
    """The stop tokens a Modelfile declares (for verification and tests)."""
    return [line.split('"')[1] for line in text.splitlines() if line.startswith("PARAMETER stop ")]
