"""Chat templates that declare tool calling, one per syntax mlx-lm reads, for
the tiny llama (``build_tiny_llama(folder, tools="hermes")``).

mlx-lm picks a model's tool parser from its chat template's text
(``mlx_lm.tokenizer_utils._infer_tool_parser``): these are short versions of
the real families' templates, each holding the markers that make mlx-lm pick
that family's parser, and rendering offered tools, the assistant's calls and
the ``tool`` turns the way that family does.
"""

from __future__ import annotations

# Qwen2.5 / Hermes: <tool_call> JSON </tool_call> (mlx-lm's json_tools).
HERMES = """\
{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% else %}\
You are a helpful assistant.{% endif %}

# Tools

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0]['role'] != 'system' %}<|im_start|>system
You are a helpful assistant.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}{% if not tools %}<|im_start|>system
{{ message.content }}<|im_end|>
{% endif %}
{%- elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}
{%- for tool_call in message.tool_calls %}{% set tool_call = tool_call.function %}<tool_call>
{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}
</tool_call>{% if not loop.last %}
{% endif %}{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

# Mistral: [TOOL_CALLS]name[ARGS]{...} (mlx-lm's mistral).
MISTRAL = """\
{%- if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}\
{% set loop_messages = messages[1:] %}{% else %}{% set system = '' %}\
{% set loop_messages = messages %}{% endif %}<|im_start|>
{%- if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}
{%- if system %}[SYSTEM_PROMPT]{{ system }}[/SYSTEM_PROMPT]{% endif %}
{%- for message in loop_messages %}
{%- if message.role == 'user' %}[INST]{{ message.content }}[/INST]
{%- elif message.role == 'assistant' and message.tool_calls %}{{ message.content }}[TOOL_CALLS]\
{% for tool_call in message.tool_calls %}{{ tool_call.function.name }}[ARGS]\
{{ tool_call.function.arguments | tojson }}{% endfor %}<|im_end|>
{%- elif message.role == 'tool' %}[TOOL_RESULTS]{{ message.content }}[/TOOL_RESULTS]
{%- else %}{{ message.content }}<|im_end|>
{%- endif %}
{%- endfor %}"""

# LFM2: <|tool_call_start|>[name(a=1)]<|tool_call_end|> (mlx-lm's pythonic).
PYTHONIC = """\
<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% endif %}\
{% if tools %}List of tools: <|tool_list_start|>{{ tools | tojson }}<|tool_list_end|>{% endif %}\
<|im_end|>
{% for message in messages %}{% if message.role != 'system' %}\
<|im_start|>{{ message.role }}
{% if message.tool_calls %}<|tool_call_start|>[{% for tool_call in message.tool_calls %}\
{{ tool_call.function.name }}({% for key, value in tool_call.function.arguments.items() %}\
{{ key }}={{ value | tojson }}{% if not loop.last %}, {% endif %}{% endfor %})\
{% if not loop.last %}, {% endif %}{% endfor %}]<|tool_call_end|>{% endif %}\
{{ message.content }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

#: The templates by family name (``build_tiny_llama(..., tools=NAME)``).
TOOL_TEMPLATES = {"hermes": HERMES, "mistral": MISTRAL, "pythonic": PYTHONIC}
