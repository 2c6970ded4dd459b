"""A published dashboard's script against its viewer's platform session, in chromium.

alice gets a dashboard published whose HTML output carries script; rita, a reviewer
signed in to the platform, opens it. The script tries what script on the platform's own
origin could do with rita's session: read the reviewers' request list, approve alice's
pending request over the API, and post the review page's approve form. It runs (it
says so in the page) and every attempt fails: the dashboard lives on an origin of its
own, its policy keeps its requests and forms there, and the platform refuses writes
sent from another origin's page anyway. The request stays submitted.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]

SERVICE = "/services/shuyu"

ATTACK = """
<pre id="attack">script ran</pre>
<script>
(async () => {
  const log = (m) => { document.getElementById("attack").textContent += "\\n" + m; };
  document.addEventListener("securitypolicyviolation",
    (e) => log("csp:" + e.effectiveDirective + ":" + e.blockedURI));
  const api = "PLATFORM/services/shuyu/api/egress/requests";
  const approve = {action: "approve", comment: "looks fine", snapshot_sha256: "SNAPSHOT"};
  try {
    const r = await fetch(api + "?status=submitted", {credentials: "include"});
    log("list:" + r.status + ":" + (await r.text()).slice(0, 80));
  } catch (e) { log("list:failed:" + e.name); }
  try {
    const r = await fetch(api + "/TARGET/decision", {
      method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify(approve)});
    log("decide:" + r.status);
  } catch (e) { log("decide:failed:" + e.name); }
  try {
    await fetch(api + "/TARGET/decision", {
      method: "POST", mode: "no-cors", credentials: "include",
      body: JSON.stringify(approve)});
    log("blind:sent");
  } catch (e) { log("blind:failed:" + e.name); }
  log("done");
  const form = document.createElement("form");
  form.method = "POST";
  form.action = "PLATFORM/services/shuyu/review/TARGET";
  for (const [k, v] of Object.entries(approve)) {
    const field = document.createElement("input");
    field.name = k; field.value = v; form.appendChild(field);
  }
  document.body.appendChild(form);
  form.submit();
})();
</script>
"""


def _notebook(target: str, snapshot: str, platform_url: str) -> dict:
    html = ATTACK.replace("PLATFORM", platform_url).replace("TARGET", target)
    html = html.replace("SNAPSHOT", snapshot)  # so that only the policy stands in the way
    source = f"from IPython.display import HTML, display\ndisplay(HTML({html!r}))"
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "markdown", "id": "t", "metadata": {}, "source": "# 区县看板"},
            {"cell_type": "code", "id": "x", "metadata": {}, "execution_count": None,
             "outputs": [], "source": source},
        ],
    }  # fmt: skip


def _target(platform: Platform) -> tuple[str, str]:
    """A pending request of alice's that rita could approve from the platform itself:
    its ID and the SHA-256 of its snapshot (a decision must name it)."""
    filed = platform.service_post(
        "alice",
        "api/egress/requests",
        {
            "kind": "cells",
            "notebook": "pending.ipynb",
            "purpose": "待审核",
            "cells": [
                {"index": 0, "source": "x", "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "涪城区 128\\n"}]}
            ],
        },
    )  # fmt: skip
    assert filed.status_code == 201, filed.text
    return filed.json()["id"], filed.json()["snapshot_sha256"]


def _publish(platform: Platform, target: str, snapshot: str) -> str:
    filed = platform.service_post(
        "alice",
        "api/egress/requests",
        {
            "kind": "dashboard",
            "notebook": "show.ipynb",
            "document": _notebook(target, snapshot, platform.url),
            "purpose": "展示看板",
            "title": "区县看板",
        },
    )
    assert filed.status_code == 201, filed.text
    dashboard = filed.json()["id"]
    decided = platform.service_post(
        "rita",
        f"api/egress/requests/{dashboard}/decision",
        {"action": "approve", "comment": "可", "snapshot_sha256": filed.json()["snapshot_sha256"]},
    )
    assert decided.status_code == 200 and decided.json()["status"] == "released", decided.text
    url = decided.json()["release"]["dashboard"]
    assert url.startswith(platform.dashboards_url + "/"), url  # not the platform's origin
    return url


def _status(platform: Platform, request_id: str) -> dict:
    session, _ = platform.service_session("rita")
    answer = session.get(f"{platform.url}{SERVICE}/api/egress/requests/{request_id}", timeout=30)
    return answer.json()


def test_a_dashboards_script_cannot_act_as_the_reviewer_viewing_it(
    page, platform: Platform
) -> None:
    target, snapshot = _target(platform)
    url = _publish(platform, target, snapshot)
    assert not requests.get(f"{platform.url}/services/dashboards/", timeout=30).ok  # no route

    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "rita")
    page.fill("#password_input", "rita-demo-2026")
    page.click("#login_submit")
    page.wait_for_load_state()
    landed = page.goto(url)
    assert landed is not None and landed.ok
    csp = landed.headers.get("content-security-policy", "")
    assert "connect-src 'self'" in csp and "form-action 'self'" in csp
    shown = "document.getElementById('attack') && document.getElementById('attack').textContent"
    page.wait_for_function(f"({shown} || '').includes('done')", timeout=180_000)
    time.sleep(3)  # let the form submission, if any got out, reach the platform
    log = page.evaluate(shown)
    assert log is not None and log.startswith("script ran"), log  # the script did run
    assert "list:failed" in log and "decide:failed" in log, log
    assert "csp:connect-src" in log and "csp:form-action" in log, log
    assert page.url.startswith(platform.dashboards_url)  # the form did not take it away

    after = _status(platform, target)
    assert after["status"] == "submitted", after
    assert [d["action"] for d in after["decisions"]] == ["submit"]
    approvals = platform.audit_events("egress.approve", actor="rita")
    assert f"egress:{target}" not in {e["target"] for e in approvals}


def test_the_platform_refuses_writes_from_another_origins_page(platform: Platform) -> None:
    """The second wall, without the dashboard's policy: what a browser would send if the
    script's requests got out. The platform's pages carry their own strict headers."""
    target, snapshot = _target(platform)
    session, xsrf = platform.service_session("rita")
    decision = f"{platform.url}{SERVICE}/api/egress/requests/{target}/decision"
    for headers in (
        {"Origin": platform.dashboards_url, "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
    ):
        refused = session.post(
            decision,
            data=json.dumps({"action": "approve", "comment": "x", "snapshot_sha256": snapshot}),
            headers={**xsrf, **headers, "Content-Type": "application/json"},
            timeout=30,
        )
        assert refused.status_code == 403, refused.text
        assert "another origin" in refused.json()["message"]
    assert _status(platform, target)["status"] == "submitted"

    page = session.get(f"{platform.url}{SERVICE}/review", timeout=30)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in page.text
    hub = session.get(f"{platform.url}/hub/home", timeout=30)
    assert hub.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in hub.headers["Content-Security-Policy"]

    same = session.post(  # the platform's own page may still decide
        decision,
        json={"action": "request_changes", "comment": "请补充说明", "snapshot_sha256": snapshot},
        headers={**xsrf, "Origin": platform.url, "Sec-Fetch-Site": "same-origin"},
        timeout=30,
    )
    assert same.status_code == 200 and same.json()["status"] == "changes_requested", same.text


#: A dashboard's output that would act as the reviewer previewing it, were it let run.
PREVIEW_ATTACK = """
<table><tr><th>区县</th><th>人数</th></tr><tr><td>涪城区</td><td>128</td></tr></table>
<script>top.document.title = "pwned"; fetch("/services/shuyu/api/egress/requests");</script>
<img src="x" onerror="top.location = '/pwned'">
<form action="/services/shuyu/review/TARGET" method="post"><input name="action" value="approve">
<button id="go">批准</button></form>
<iframe src="/services/shuyu/review"></iframe><meta http-equiv="refresh" content="0;url=/pwned">
"""

#: What a script in the preview could do with the reviewer's session, tried from inside
#: the preview frame (the browser evaluates it there, as if the merchant's script had run).
INSIDE = """async ([target, snapshot]) => {
  const tried = {origin: self.origin};
  const attempt = async (name, act) => {
    try { tried[name] = String(await act()); } catch (e) { tried[name] = "failed:" + e.name; }
  };
  await attempt("cookie", () => document.cookie);
  await attempt("parent", () => parent.document.getElementById("decide").innerHTML);
  await attempt("list", async () => (await fetch("/services/shuyu/api/egress/requests",
    {credentials: "include"})).status);
  await attempt("decide", async () => (await fetch(
    "/services/shuyu/api/egress/requests/" + target + "/decision",
    {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"},
     body: JSON.stringify({action: "approve", comment: "x", snapshot_sha256: snapshot})})).status);
  await attempt("blind", async () => (await fetch(
    "/services/shuyu/api/egress/requests/" + target + "/decision",
    {method: "POST", mode: "no-cors", credentials: "include",
     body: JSON.stringify({action: "approve", comment: "x", snapshot_sha256: snapshot})})).type);
  return tried;
}"""


def _chart() -> str:
    """A real bar chart as a notebook's PNG output (base64)."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(4, 3))
    axes.bar(["Fucheng", "Youxian"], [128, 96])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_reviewers_preview_cannot_act_as_the_reviewer(page, platform: Platform) -> None:
    """rita previews a dashboard before approving: she sees its table and chart, in a
    sandboxed frame whose content runs nothing and could not use her session if it did."""
    target, snapshot = _target(platform)
    attack = PREVIEW_ATTACK.replace("TARGET", target)
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# 沙箱预览看板"},
        {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 2,
         "source": "show()", "outputs": [
             {"output_type": "display_data", "metadata": {},
              "data": {"image/png": _chart(), "text/plain": "<Figure>"}},
             {"output_type": "execute_result", "execution_count": 2, "metadata": {}, "data": {
                 "text/html": attack, "text/plain": "t"}}]}]}  # fmt: skip
    filed = platform.file_dashboard("alice", document, "预览沙箱测试")
    dashboard = filed["id"]

    seen: dict[str, dict[str, str]] = {}
    sent: list[str] = []
    page.on("response", lambda r: seen.setdefault(r.url.split("?")[0], r.headers))
    page.on("request", lambda r: sent.append(f"{r.method} {r.url}"))
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "rita")
    page.fill("#password_input", "rita-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/services/shuyu/$"), timeout=30_000)
    sent.clear()
    page.goto(f"{platform.url}{SERVICE}/review/{dashboard}")
    assert page.get_attribute("#preview", "sandbox") == ""  # no script, no same origin
    shown = page.frame_locator("#preview")
    shown.locator("td").first.wait_for(timeout=30_000)
    assert shown.locator("h1").inner_text() == "沙箱预览看板"
    assert shown.locator("td").nth(0).inner_text() == "涪城区"  # the table, rendered
    chart = shown.locator("img[src^='data:image/png']")
    assert chart.evaluate("img => img.complete && img.naturalWidth") >= 300  # the chart
    assert "show()" not in shown.locator("body").inner_text()  # no code

    url = f"{platform.url}{SERVICE}/review/{dashboard}/preview"
    policy = seen[url]["content-security-policy"]
    assert policy.startswith("sandbox;") and "frame-ancestors 'self'" in policy
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert "frame-src 'self'" in seen[page.url]["content-security-policy"]
    frame = page.frame(url=url)
    assert frame is not None
    tried = frame.evaluate(INSIDE, [target, snapshot])
    assert tried["origin"] == "null", tried  # an opaque origin, not the platform's
    assert tried["cookie"].startswith("failed:SecurityError"), tried
    assert tried["parent"].startswith("failed:SecurityError"), tried
    assert tried["list"] == "failed:TypeError" and tried["decide"] == "failed:TypeError", tried
    time.sleep(1)
    assert page.title() != "pwned" and "/pwned" not in page.url
    assert not [s for s in sent if "pwned" in s or s.startswith("GET " + url + "/")]
    assert not [s for s in sent if s.endswith(f"{SERVICE}/review")]  # nothing framed in it

    after = _status(platform, target)
    assert after["status"] == "submitted", after  # the blind write was refused too
    approvals = platform.audit_events("egress.approve", actor="rita")
    assert f"egress:{target}" not in {e["target"] for e in approvals}
    assert page.query_selector("#decide") is not None  # rita can still decide herself
