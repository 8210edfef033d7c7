"""`clawdesk agent parse` against ByteDance's own UI-TARS parser (the `ui-tars` package on PyPI).

Every reply of the corpus below is read twice: by `clawdesk agent parse --json` and by
`parse_action_to_structure_output` + `parsing_response_to_pyautogui_code`. Both pyautogui
scripts then run against a recorder standing in for pyautogui, pyperclip and time, and the
recorded events are compared (points within a pixel). A difference is either a bug or one of
KNOWN below, each with the reason we do otherwise; the script fails on any other, and on a KNOWN
difference that no longer shows (so the list stays true).

Usage: ui_tars_parse.py CLAWDESK_BINARY. Prints one JSON line: cases, events, differences.
"""

import json
import subprocess
import sys
import types

from ui_tars import action_parser as ui_tars

SCREEN = (1920, 1080)

# (name, reply). Coordinates are on UI-TARS 1.0's 0-1000 grid for `ui-tars-1000` and in the
# resized image's pixels for `ui-tars-pixels` (UI-TARS 1.5); the same numbers serve both, since
# both are inside either range.
CORPUS = [
    ("click", "Thought: The Save button.\nAction: click(start_box='(235,512)')"),
    ("click_box_tokens", "Action: click(start_box='<|box_start|>(235,512)<|box_end|>')"),
    ("click_point_tag", "Thought: here\nAction: click(point='<point>235 512</point>')"),
    ("click_box_corners", "Action: click(start_box='(100,200,300,400)')"),
    ("left_double", "Action: left_double(start_box='(640,360)')"),
    ("right_single", "Action: right_single(start_box='(10,990)')"),
    ("drag", "Action: drag(start_box='(100,100)', end_box='(900,700)')"),
    ("drag_points", "Action: drag(start_point='<point>100 100</point>', end_point='<point>900 700</point>')"),
    ("hotkey_combo", "Action: hotkey(key='ctrl c')"),
    ("hotkey_three", "Action: hotkey(key='ctrl shift t')"),
    ("hotkey_enter", "Action: hotkey(key='enter')"),
    ("hotkey_space", "Action: hotkey(key='ctrl space')"),
    ("hotkey_arrow", "Action: hotkey(key='arrowleft')"),
    ("type_plain", "Thought: the name\nAction: type(content='Hello world')"),
    ("type_quote", "Action: type(content='it\\'s \"fine\"')"),
    ("type_newline_inside", "Action: type(content='line one\\nline two')"),
    ("type_submit", "Action: type(content='search terms\\n')"),
    ("scroll_down", "Action: scroll(start_box='(500,500)', direction='down')"),
    ("scroll_up", "Action: scroll(start_box='(500,500)', direction='up')"),
    ("scroll_left", "Action: scroll(start_box='(500,500)', direction='left')"),
    ("scroll_right", "Action: scroll(start_box='(500,500)', direction='right')"),
    ("wait", "Thought: loading\nAction: wait()"),
    ("finished", "Action: finished()"),
    ("finished_content", "Thought: all done\nAction: finished(content='The total is 42.')"),
    ("call_user", "Thought: a password\nAction: call_user()"),
    ("two_actions", "Thought: two\nAction: click(start_box='(100,200)')\n\ntype(content='abc')"),
    ("three_actions", "Action: hotkey(key='ctrl a')\n\nhotkey(key='ctrl c')\n\nclick(start_box='(700,300)')"),
    ("actions_then_finished", "Action: click(start_box='(100,200)')\n\nfinished(content='ok')"),
]

# Differences we keep, each with why. Key: (case name or "*", kind of difference).
KNOWN = {
    ("click_box_tokens", "refused_theirs"): "ui-tars's parser fails on the <|box_start|> markup UI-TARS 1.0 writes (its agents strip the tokens first); we read it",
    ("scroll_left", "missing_theirs"): "ui-tars writes nothing for a left scroll; we scroll left",
    ("scroll_right", "missing_theirs"): "ui-tars writes nothing for a right scroll; we scroll right",
    ("*", "scroll_point_unscaled"): "ui-tars passes the scroll point unscaled (0-1), not in pixels",
    ("wait", "missing_theirs"): "ui-tars has no code for wait() (a comment); we sleep 5 s, as its prompt says",
    ("type_quote", "extra_theirs"): "ui-tars types the backslash of an escaped quote (it escapes quotes again before pasting); we type the quote",
    ("type_quote", "missing_theirs"): "the same text, typed without the stray backslash",
    ("type_submit", "extra_theirs"): "ui-tars presses Enter after pasting a text that ends in a newline the paste already typed",
    ("actions_then_finished", "missing_theirs"): "ui-tars replaces the whole script with DONE when finished() comes; we do the actions first",
}


def recorder():
    """Fake pyautogui, pyperclip and time modules that record what a script does."""
    events = []
    clip = {"text": None}

    def point(x, y):
        return (float(x), float(y))

    def click(x=None, y=None, clicks=1, button="left", **_):
        events.append(("click", point(x, y), button, int(clicks)))

    def name(key):
        # pyautogui takes " " and "space" alike.
        key = str(key).lower()
        return "space" if key == " " else key

    def hotkey(*keys, **_):
        keys = tuple(name(k) for k in keys)
        if keys == ("ctrl", "v") and clip["text"] is not None:
            events.append(("type", clip["text"]))
            clip["text"] = None
        else:
            events.append(("key", keys))

    def scroll(amount, x=None, y=None, **_):
        events.append(("scroll", "v", int(amount), None if x is None else point(x, y)))

    def hscroll(amount, x=None, y=None, **_):
        events.append(("scroll", "h", int(amount), None if x is None else point(x, y)))

    pyautogui = types.ModuleType("pyautogui")
    pyautogui.click = click
    pyautogui.doubleClick = lambda x=None, y=None, button="left", **_: click(x, y, 2, button)
    pyautogui.tripleClick = lambda x=None, y=None, button="left", **_: click(x, y, 3, button)
    pyautogui.rightClick = lambda x=None, y=None, **_: click(x, y, 1, "right")
    pyautogui.middleClick = lambda x=None, y=None, **_: click(x, y, 1, "middle")
    pyautogui.moveTo = lambda x, y, *_, **__: events.append(("move", point(x, y)))
    pyautogui.dragTo = lambda x, y, *_, **__: events.append(("drag_to", point(x, y)))
    pyautogui.hotkey = hotkey
    pyautogui.press = lambda key, **_: events.append(("key", (name(key),)))
    pyautogui.keyDown = lambda key, **_: events.append(("key_down", name(key)))
    pyautogui.keyUp = lambda key, **_: events.append(("key_up", name(key)))
    pyautogui.typewrite = lambda text, *_, **__: events.append(("type", text))
    pyautogui.write = pyautogui.typewrite
    pyautogui.scroll = scroll
    pyautogui.hscroll = hscroll

    pyperclip = types.ModuleType("pyperclip")
    pyperclip.copy = lambda text: clip.__setitem__("text", text)

    time = types.ModuleType("time")
    time.sleep = lambda s: events.append(("sleep", float(s)))
    return events, {"pyautogui": pyautogui, "pyperclip": pyperclip, "time": time}


def run_script(code):
    """The events of a pyautogui script; DONE, FAIL and WAIT lines are events too."""
    events, modules = recorder()
    lines = []
    for line in code.splitlines():
        if line.strip() in ("DONE", "FAIL", "WAIT"):
            lines.append(f"__special({line.strip()!r})")
        else:
            lines.append(line)
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        scope = dict(modules)
        scope["__special"] = lambda word: events.append((word.lower(),))
        exec("\n".join(lines), scope)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return events


def theirs(reply, fmt, image):
    if fmt == "ui-tars-1000":
        parsed = ui_tars.parse_action_to_structure_output(
            reply, 1000, SCREEN[1], SCREEN[0], model_type="doubao")
    else:
        parsed = ui_tars.parse_action_to_structure_output(
            reply, 1000, SCREEN[1], SCREEN[0], model_type="qwen25vl")
    # The package's coordinates are 0-1 after parsing; scale_factor=1 makes them screen
    # pixels (its default of 1000 is for coordinates still on the 0-1000 grid).
    code = ui_tars.parsing_response_to_pyautogui_code(
        parsed, SCREEN[1], SCREEN[0], input_swap=True, scale_factor=1)
    # Sleeps in their script only pace the actions (after a paste, between actions).
    return [e for e in run_script(code) if e[0] != "sleep"]


def ours(binary, reply, fmt, image):
    out = subprocess.run(
        [binary, "agent", "parse", "--format", fmt, "--json",
         "--screen", f"{SCREEN[0]}x{SCREEN[1]}", "--image", f"{image[0]}x{image[1]}"],
        input=reply, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"clawdesk agent parse failed on {reply!r}: {out.stderr.strip()}")
    parsed = json.loads(out.stdout)
    events = run_script("\n".join(parsed["pyautogui"]))
    # Our wait() is a sleep; pacing is not ours to add.
    return [("wait",) if e[0] == "sleep" else e for e in events]


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, tuple) and isinstance(y, tuple) and len(x) == 2 and all(
                isinstance(v, float) for v in x + y):
            if abs(x[0] - y[0]) > 1.0 or abs(x[1] - y[1]) > 1.0:
                return False
        elif x != y:
            return False
    return True


def compare(name, mine, them):
    """The kinds of difference between two event lists, with detail."""
    found = []
    # ui-tars's scroll point is 0-1: note it, then compare it in pixels.
    fixed = []
    for e in them:
        if e[0] == "scroll" and e[3] is not None and max(e[3]) <= 1.0:
            found.append(("scroll_point_unscaled", str(e)))
            e = (e[0], e[1], e[2], (e[3][0] * SCREEN[0], e[3][1] * SCREEN[1]))
        fixed.append(e)
    them = fixed
    i = j = 0
    while i < len(mine) or j < len(them):
        if i < len(mine) and j < len(them) and same(mine[i], them[j]):
            i, j = i + 1, j + 1
        elif j + 1 < len(them) and i < len(mine) and same(mine[i], them[j + 1]):
            found.append(("extra_theirs", str(them[j])))
            j += 1
        elif i < len(mine) and (j >= len(them) or not any(same(mine[i], t) for t in them[j:])):
            found.append(("missing_theirs", str(mine[i])))
            i += 1
        elif j < len(them):
            found.append(("extra_theirs", str(them[j])))
            j += 1
    return found


def main():
    binary = sys.argv[1]
    image = tuple(reversed(ui_tars.smart_resize(SCREEN[1], SCREEN[0])))
    unexplained, seen_known, events = [], set(), 0
    for fmt in ("ui-tars-1000", "ui-tars-pixels"):
        for name, reply in CORPUS:
            mine = ours(binary, reply, fmt, image)
            events += len(mine)
            try:
                them = theirs(reply, fmt, image)
                found = compare(name, mine, them)
            except Exception as e:  # noqa: BLE001 - their parser's failure is a finding
                them, found = [], [("refused_theirs", f"{type(e).__name__}: {e}")]
            for kind, detail in found:
                key = (name, kind) if (name, kind) in KNOWN else ("*", kind)
                if key in KNOWN:
                    seen_known.add(key)
                else:
                    unexplained.append({"case": name, "format": fmt, "kind": kind,
                                        "detail": detail, "ours": str(mine), "theirs": str(them)})
    stale = sorted(f"{k[0]}/{k[1]}" for k in KNOWN if k not in seen_known)
    print(json.dumps({
        "cases": len(CORPUS) * 2,
        "events": events,
        "unexplained": unexplained,
        "known": {f"{k[0]}/{k[1]}": v for k, v in KNOWN.items() if k in seen_known},
        "stale_known": stale,
    }))
    sys.exit(1 if unexplained or stale else 0)


if __name__ == "__main__":
    main()
