// The Jinja subset of chat templates (src/tokenizer/jinja.h): jinja2's whitespace rules and scoping, Python's
// values, and the errors that name the template's line. The expected texts are what jinja2 3.1 renders in
// transformers' environment (trim_blocks, lstrip_blocks); tests/golden/test_chat_template_golden.cpp checks
// whole real templates.
#include <gtest/gtest.h>

#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer/jinja.h"

namespace coenc::test {
namespace {

std::string render(const std::string& source, const jinja::Object& vars = {}) {
  return jinja::Template(source, "t").render(vars);
}

const jinja::Object kVars = {
    {"x", jinja::Object{{"a", jinja::Array{1, "\xC3\xA9<\"\n"}}, {"b", nullptr}, {"c", true}, {"d", 1.5}}},
    {"m", jinja::Array{jinja::Object{{"role", "user"}}, jinja::Object{{"role", "a"}, {"x", 1}}}},
};

TEST(Jinja, WhitespaceControlAsTransformersSetsItUp) {
  // lstrip_blocks: the indentation before a block tag goes; trim_blocks: the newline after it.
  EXPECT_EQ(render("  {% if true %}\n  x\n  {% endif %}\n  {{ 'v' }}\n"), "  x\n  v");
  EXPECT_EQ(render("a\n  {#- c -#}\n  b {# c #}\nz"), "ab z");
  EXPECT_EQ(render("a {%- if true -%} b {%- endif -%} c"), "abc");
  EXPECT_EQ(render("  {%- if true %}\n    {{ 'x' }}\n  {%+ if true %}y{% endif %}\n{% endif -%}\n  end"),
            "    x\n  yend");
  EXPECT_EQ(render("x\n    {% for i in [1] %}\n    {{ i }}\n    {% endfor %}\ny"), "x\n    1\ny");
  EXPECT_EQ(render("line\r\nnext\n"), "line\nnext");  // newlines normalised, one trailing newline dropped
}

TEST(Jinja, ScopesAsJinja2) {
  // A set inside a loop lives for one iteration; an if has no scope; a namespace carries state out of loops.
  EXPECT_EQ(render("{% for i in [1,2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}"),
            "[]");
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"),
            "121");
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
  EXPECT_EQ(render("{% set ns = namespace(a=1) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% endfor %}"
                   "{{ ns.a }}"),
            "4");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}hi {{ a }}{% endset %}[{{ c }}]"),
            "12[hi 1]");
}

TEST(Jinja, LoopsAndTheLoopVariable) {
  EXPECT_EQ(
      render("{% for x in [1,2,3,4] if x is even %}{{ loop.index }}:{{ x }}/{{ loop.length }} {% endfor %}"),
      "1:2/2 2:4/2 ");
  EXPECT_EQ(
      render("{% for x in 'abc' %}{{ loop.revindex }}{{ loop.previtem }}{{ loop.nextitem }}{% endfor %}"),
      "3b2ac1b");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|"
                   "{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "13|1");
  EXPECT_EQ(
      render("{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }}{% if not loop.last %},{% endif %}"
             "{% endfor %}{% for z in nothing %}{% else %}empty{% endfor %}"),
      "x=1,y=2empty");
  EXPECT_EQ(render("{% for m in m[::-1] %}{{ m.role }}{% endfor %}", kVars), "auser");
}

TEST(Jinja, PythonValues) {
  EXPECT_EQ(
      render("{{ none }}|{{ true }}|{{ [1,'a',none,true] }}|{{ {'a':1} }}|{{ 1.0 }}|{{ 3/2 }}|{{ 7//2 }}|"
             "{{ -7//2 }}|{{ -7 % 3 }}|{{ 2**10 }}|{{ (1,) }}|{{ 0.1+0.2 }}|{{ 1e20 }}|{{ 1.5e-7 }}"),
      "None|True|[1, 'a', None, True]|{'a': 1}|1.0|1.5|3|-4|2|1024|(1,)|0.30000000000000004|1e+20|1.5e-07");
  EXPECT_EQ(
      render("{{ 'abc'[::-1] }}|{{ [1,2,3][1:] }}|{{ 'h\xC3\xA9llo'[1] }}|{{ [1,2,3][-1] }}|{{ 'x'[5] }}|"
             "{{ 'abcdef'[1:-1:2] }}|{{ [1,2,3,4][3:0:-1] }}"),
      "cba|[2, 3]|\xC3\xA9|3||bd|[4, 3, 2]");
  EXPECT_EQ(render("{{ 1 == 1.0 }}{{ '1' == 1 }}{{ (1,2) == [1,2] }}{{ {'a':1,'b':2} == {'b':2,'a':1} }}"
                   "{{ 1 < 2 < 3 }}{{ 'a' not in 'b' }}{{ 'k' in {'k': 1} }}"),
            "TrueFalseFalseTrueTrueTrueTrue");
  EXPECT_EQ(
      render("{{ 'a' ~ 1 ~ none ~ true }}|{{ u ~ 'a' }}|{{ 'a' if false }}|{{ 'c' if false else 'd' }}"),
      "a1NoneTrue|a||d");
}

TEST(Jinja, StringMethodsFiltersAndTests) {
  EXPECT_EQ(
      render("{{ 'a b  c'.split() }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ '  a b c  '.split(None, 1) }}|"
             "{{ 'xxhixx'.strip('x') }}|{{ '\\n x \\n'.lstrip('\\n') }}|{{ 'abc'.endswith(('x','c')) }}"),
      "['a', 'b', 'c']|['a,b', 'c']|['a', 'b c  ']|hi| x \n|True");
  EXPECT_EQ(render("{{ x | tojson }}", kVars),
            "{\"a\": [1, \"\xC3\xA9<\\\"\\n\"], \"b\": null, \"c\": true, \"d\": 1.5}");
  EXPECT_EQ(render("{{ {'a': [1, 2], 'b': {}} | tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {}\n}");
  EXPECT_EQ(
      render(
          "{{ m|selectattr('role','equalto','user')|list|length }}|{{ m|map(attribute='role')|join(',') }}|"
          "{{ m|rejectattr('x','undefined')|list }}",
          kVars),
      "1|user,a|[{'role': 'a', 'x': 1}]");
  EXPECT_EQ(
      render(
          "{{ u|default('d') }}|{{ ''|default('d', true) }}|{{ u|length }}|{{ ' x '|trim }}|{{ 'ab'|upper }}|"
          "{{ [3,1,2]|sort }}|{{ ['b','A','a']|sort }}|{{ 'aaa'|replace('a','b',2) }}|{{ '3'|int + 1 }}"),
      "d|d|0|x|AB|[1, 2, 3]|['A', 'a', 'b']|bba|4");
  EXPECT_EQ(
      render(
          "{{ u is defined }}{{ x is mapping }}{{ 'x' is string }}{{ none is none }}{{ 5 is divisibleby 5 }}"
          "{{ x.b is not none }}{{ false is false }}",
          kVars),
      "FalseTrueTrueTrueTrueFalseTrue");
  EXPECT_EQ(render("{{ strftime_now('%Y') | length }}{% if strftime_now is defined %}!{% endif %}"), "4!");
}

TEST(Jinja, Macros) {
  // A macro sees its parameters and the template's top level, not the caller's loop variables.
  EXPECT_EQ(
      render("{% macro f(a, b='x') %}[{{ a }}{{ b }}{{ top }}{{ i }}]{% endmacro %}{% set top = 'T' %}"
             "{% for i in [1] %}{{ f(1) }}{{ f(2, b='y') }}{{ f(b=3, a=4) }}{% endfor %}{{ f is callable }}"),
      "[1xT][2yT][43T]True");
  EXPECT_EQ(
      render("{% macro g(n) %}{% for k in range(n) %}{{ k }}{% endfor %}{% endmacro %}{{ g(3) ~ 'z' }}"),
      "012z");
  EXPECT_COENC_ERROR(render("{% macro f(a) %}{{ a }}{% endmacro %}{{ f(zz=1) }}"),
                     "t line 1: macro 'f' has no parameter named 'zz'");
}

TEST(Jinja, StrftimeNowCanBePinned) {
  jinja::RenderOptions o;
  o.strftime_now = [](const std::string& format) { return "<" + format + ">"; };
  EXPECT_EQ(jinja::Template("{{ strftime_now('%d %b %Y') }}").render({}, o), "<%d %b %Y>");
}

// ---- errors: one line each, naming the template and the line

TEST(JinjaErrors, UnsupportedConstructsNameTheirLine) {
  try {
    jinja::Template(
        "{{ bos_token }}\n{% for m in messages %}\n  {{ m.content | wordwrap(20) }}\n{% endfor %}",
        "tokenizer_config.json: chat_template");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_STREQ(
        e.what(),
        "tokenizer_config.json: chat_template line 3, column 18: the filter 'wordwrap' is not supported by "
        "Co-Encoder's Jinja subset");
  }
  EXPECT_COENC_ERROR(jinja::Template("x\n{% include 'other.jinja' %}", "t"),
                     "t line 2, column 4: the {% include %} tag is not supported");
  EXPECT_COENC_ERROR(jinja::Template("{% if x is prime %}{% endif %}", "t"),
                     "line 1, column 12: the test 'prime'");
  EXPECT_COENC_ERROR(jinja::Template("{{ f(*args) }}", "t"), "*args and **kwargs in a call is not supported");
}

TEST(JinjaErrors, SyntaxErrorsNameTheirLine) {
  EXPECT_COENC_ERROR(jinja::Template("a\nb {% if x %}\nc", "t"),
                     "t line 3, column 2: unexpected end of template");
  EXPECT_COENC_ERROR(jinja::Template("{{ 'abc }}", "t"),
                     "t line 1, column 4: the string literal is never closed");
  EXPECT_COENC_ERROR(jinja::Template("{{ 1 + }}", "t"), "t line 1, column 8: unexpected '}}'");
  EXPECT_COENC_ERROR(jinja::Template("{{ (1 + }}", "t"), "t line 1, column 11: missing \"}}\"");
  EXPECT_COENC_ERROR(jinja::Template("{% endfor %}", "t"), "t line 1, column 4: unexpected tag 'endfor'");
  EXPECT_COENC_ERROR(jinja::Template("{% break %}", "t"), "'break' outside a loop");
}

TEST(JinjaErrors, RenderErrorsNameTheirLine) {
  EXPECT_COENC_ERROR(render("\n{{ 'a' + u }}"), "t line 2: 'u' is undefined");
  EXPECT_COENC_ERROR(render("{{ d.x.y }}", {{"d", jinja::Object{}}}),
                     "t line 1: 'dict object' has no attribute 'x'");
  EXPECT_COENC_ERROR(render("{{ 1 < 'a' }}"), "'<' not supported between instances of 'int' and 'str'");
  EXPECT_COENC_ERROR(render("{{ [1].append(2) }}"),
                     "access to attribute 'append' of 'list' object is unsafe");
  EXPECT_COENC_ERROR(render("{% for a in 1 %}{% endfor %}"), "'int' object is not iterable");
  // Python's integers do not overflow; ours say so rather than wrap. range() has the sandbox's limit.
  EXPECT_COENC_ERROR(render("{{ 9223372036854775807 + 1 }}"), "t line 1: integer overflow");
  EXPECT_COENC_ERROR(render("{{ range(200000) | length }}"), "Range too big");
  EXPECT_COENC_ERROR(render("{{ 'x' * 10000000000 }}"), "the repetition makes more than");
}

TEST(JinjaErrors, RaiseExceptionSurfacesItsMessage) {
  const std::string source =
      "{%- for message in messages %}\n"
      "  {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
      "    {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n"
      "  {%- endif %}\n"
      "{%- endfor %}";
  const ChatTemplate chat = ChatTemplate::jinja(source, "tokenizer_config.json: chat_template");
  try {
    render_chat({{"assistant", "x"}}, chat, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidInput);
    EXPECT_STREQ(
        e.what(),
        "tokenizer_config.json: chat_template refused the conversation: Conversation roles must alternate "
        "user/assistant/user/assistant/... (raise_exception at line 3)");
  }
  EXPECT_EQ(render_chat({{"user", "x"}}, chat, {}), "");
}

}  // namespace
}  // namespace coenc::test
