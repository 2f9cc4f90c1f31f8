#!/usr/bin/env python3
"""Drives `m2sa serve`'s web page in real headless Chromium through the DevTools protocol over a pipe
(--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4), with nothing but the Python standard library:
loads the page, uploads an image into the file input (DOM.setFileInputFiles, what a user's file pick does), types a
question, clicks Ask, waits for the overlay, and writes a screenshot. Prints one JSON line with what the page shows.

usage: web_page_cdp.py CHROMIUM URL IMAGE QUESTION SCREENSHOT PROFILE_DIR [TIMEOUT_S]
"""
import base64
import json
import os
import subprocess
import sys
import time


def main():
    chromium, url, image, question, screenshot, profile = sys.argv[1:7]
    timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 180.0
    cmd_r, cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
    res_r, res_w = os.pipe()  # Chromium writes answers and events on fd 4; we read them

    def child_fds():
        os.dup2(cmd_r, 20)
        os.dup2(res_w, 21)
        os.dup2(20, 3)
        os.dup2(21, 4)

    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + profile, "--remote-debugging-pipe", "--window-size=1280,900", "about:blank"]
    proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(cmd_r)
    os.close(res_w)
    buf = b""
    next_id = [0]
    events = []

    def read_message():
        nonlocal buf
        while b"\0" not in buf:
            chunk = os.read(res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            buf += chunk
        msg, buf = buf.split(b"\0", 1)
        return json.loads(msg)

    def send(method, params=None, session=None):
        next_id[0] += 1
        msg = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            m = read_message()
            if m.get("id") == next_id[0]:
                if "error" in m:
                    raise RuntimeError(method + ": " + json.dumps(m["error"]))
                return m.get("result", {})
            events.append(m)

    def evaluate(session, expression):
        r = send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session)
        return r.get("result", {}).get("value")

    result = {}
    try:
        target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        send("Page.enable", session=session)
        send("Runtime.enable", session=session)
        send("Page.navigate", {"url": url}, session)
        deadline = time.time() + timeout
        while evaluate(session, "document.readyState") != "complete" or not evaluate(session, "!!document.getElementById('file')"):
            if time.time() > deadline:
                raise RuntimeError("the page did not load")
            time.sleep(0.1)
        root = send("DOM.getDocument", {}, session)["root"]["nodeId"]
        node = send("DOM.querySelector", {"nodeId": root, "selector": "#file"}, session)["nodeId"]
        send("DOM.setFileInputFiles", {"files": [os.path.abspath(image)], "nodeId": node}, session)
        while evaluate(session, "document.body.dataset.state") != "image":
            if time.time() > deadline:
                raise RuntimeError("the page did not take the image: " + str(evaluate(session, "document.getElementById('status').textContent")))
            time.sleep(0.1)
        evaluate(session, "document.getElementById('question').focus()")
        send("Input.insertText", {"text": question}, session)
        evaluate(session, "document.getElementById('ask').click()")
        while True:
            state = evaluate(session, "document.body.dataset.state")
            if state in ("answered", "error"):
                break
            if time.time() > deadline:
                raise RuntimeError("no answer in time (state " + str(state) + ")")
            time.sleep(0.1)
        result = evaluate(session, """(() => ({
            state: document.body.dataset.state,
            status: document.getElementById('status').textContent,
            answer: document.getElementById('answer').innerText,
            masks: Number(document.body.dataset.masks),
            toggles: document.querySelectorAll('.mask-toggle').length,
            layers: document.querySelectorAll('#layers canvas').length,
            phrases: Array.from(document.querySelectorAll('#answer .phrase')).map(e => [e.textContent, e.style.backgroundColor]),
            overlay_width: document.getElementById('overlay').naturalWidth,
            overlay_height: document.getElementById('overlay').naturalHeight,
        }))()""")
        shot = send("Page.captureScreenshot", {"format": "png"}, session)["data"]
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot))
        result["screenshot"] = screenshot
        try:
            send("Browser.close")
        except RuntimeError:
            pass
    except Exception as e:  # reported to the test, which prints it
        result["exception"] = str(e)
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
