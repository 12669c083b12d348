"""Markdown for BENCHMARKS.md: one table per scenario and the goals of issue 5."""

from pathlib import Path

from .loadgen import median

BEGIN = "<!-- bench:results:begin (written by bench/run; edits inside are overwritten) -->"
END = "<!-- bench:results:end -->"


def f_int(x):
    return "–" if x != x else f"{x:,.0f}"


def f_us(x):
    if x != x:
        return "–"
    return f"{x:,.0f} µs" if abs(x) >= 100 else f"{x:.1f} µs"


def f_ms(x):
    if x != x:
        return "–"
    return f"{x:,.0f} ms" if abs(x) >= 100 else f"{x:.1f} ms" if abs(x) >= 1 else f"{x:.2f} ms"


def f_mb(kb):
    return f"{kb / 1024:.1f} MB"


def verdict(ok):
    return "**met**" if ok else "**missed**"


def spread(values, fmt):
    v = [x for x in values if x == x]
    return f"{fmt(min(v))} – {fmt(max(v))}" if v else "–"


def render(res, env, cfg, command, problems=()):
    out = []

    def w(text):
        if text is not None:  # blocks that have nothing to say return None
            out.append(text)

    goals = []
    w(f"Run {env['date']} · commit `{env['commit']}` · {cfg.rounds} round(s) · command:\n")
    w(f"```sh\n{command}\n```\n")
    w("| machine | |\n|---|---|")
    for k in ("cpu", "nproc", "memory", "kernel", "php", "nginx", "php-fpm", "wrk", "tusk", "tusk serve", "load"):
        w(f"| {k} | {env.get(k, '–')} |")
    w("")
    w(f"**Same PHP on both sides.** Tusk's php-cgi and the rival's php-fpm read {env['ini']}; both get the `-d` "
      f"flags Tusk gives php-cgi, read from a live Tusk instance: `{' '.join(env.get('web_flags', []))}`. "
      f"Opcache as each server sees it:\n")
    w("| setting | Tusk php-cgi | php-fpm (rival) | Tusk function runtime (php CLI) |\n|---|---|---|---|")
    for k, (a, b, c) in env.get("opcache", {}).items():
        w(f"| `{k}` | {a} | {b} | {c} |")
    w("")
    if env.get("cli_flags"):
        w(f"Function instances (`php-82`) run `php {' '.join('-d ' + f for f in env['cli_flags'])} bootstrap.php`.\n")

    # 1
    w("### 1. Web hello world: Tusk vs nginx + php-fpm\n")
    s = res.get("1")
    w(_took(s))
    if s and not s.get("error"):
        w(f"`<?php echo \"Hello\";` as a `php-82-fpm` app. Tusk: `reservedConcurrency` = `provisionedConcurrency` = "
          f"{s['workers']} php-cgi instances. Rival: nginx (worker_processes auto, keep-alive to clients, a new "
          f"FastCGI connection per request as in Debian's default config) + php-fpm `pm = static`, "
          f"`pm.max_children = {s['workers']}`, on a Unix socket. wrk -t2, keep-alive, {s['seconds']} s per run, "
          f"sides alternating; medians over {cfg.rounds} round(s); ratio = median of the per-round Tusk/rival ratios. "
          f"req/s counts 2xx responses only; errors = non-2xx responses + timeouts over all rounds.\n")
        w("| connections | Tusk req/s | nginx + php-fpm req/s | Tusk / rival | ratio range | Tusk p50 / p99 | rival p50 / p99 | errors Tusk / rival |")
        w("|---|---|---|---|---|---|---|---|")
        for c in (16, 64):
            t = [r for r in s["runs"] if r["conns"] == c and r["side"] == "tusk"]
            v = [r for r in s["runs"] if r["conns"] == c and r["side"] == "rival"]
            ratios = [a["rps"] / b["rps"] for a, b in zip(sorted(t, key=lambda r: r["round"]), sorted(v, key=lambda r: r["round"])) if b["rps"]]
            ratio = median(ratios)
            w(f"| {c} | {f_int(median([r['rps'] for r in t]))} | {f_int(median([r['rps'] for r in v]))} | **{ratio:.2f}** | "
              f"{spread(ratios, lambda x: f'{x:.2f}')} | {f_ms(median([r['p50_ms'] for r in t]))} / {f_ms(median([r['p99_ms'] for r in t]))} | "
              f"{f_ms(median([r['p50_ms'] for r in v]))} / {f_ms(median([r['p99_ms'] for r in v]))} | "
              f"{sum(r['errors'] for r in t)} / {sum(r['errors'] for r in v)} |")
            goals.append((f"1. web hello, {c} connections: throughput ratio ≥ 1.0 (aim ≥ 1.3)", f"{ratio:.2f}", ratio >= 1.0))
        w("\nCPU time per request during the wrk runs (utime + stime from /proc, median over rounds; wrk's own CPU "
          "not counted). `gateway` = the tusk process / nginx master + workers; `PHP` = Tusk's php-cgi instances / "
          "php-fpm master + children (processes alive for the whole run; an instance that died takes its CPU "
          "time with it).\n")
        w("| connections | Tusk gateway | nginx | Tusk PHP (php-cgi) | rival PHP (php-fpm) |\n|---|---|---|---|---|")
        for c in (16, 64):
            t = [r for r in s["runs"] if r["conns"] == c and r["side"] == "tusk"]
            v = [r for r in s["runs"] if r["conns"] == c and r["side"] == "rival"]
            w(f"| {c} | {f_us(median([r['cpu_gateway_us'] for r in t]))} | {f_us(median([r['cpu_gateway_us'] for r in v]))} | "
              f"{f_us(median([r['cpu_php_us'] for r in t]))} | {f_us(median([r['cpu_php_us'] for r in v]))} |")
        w(f"\nTusk started {s['tusk_instances_started_during_runs']:.0f} instance(s) during the runs (all {s['workers']} "
          f"were provisioned before; more means instances died); node RSS after: {f_mb(s['node_rss_kb_after'])}.\n")
        if s.get("tusk_throttles_total"):
            w(f"The node answered {s['tusk_throttles_total']:.0f} requests with 429 (`tusk_throttles_total`) although "
              f"at most 64 requests were ever waiting (queue limit 100).\n")
        w(_log_block(s.get("tusk_error_lines"), f"{s['tusk_errors_total']:.0f} errors counted by the node; its log says"))
        w(_profile_block(s.get("profile"), "Where the node's CPU goes (web hello, wrk -c16)"))
    else:
        w(_failed(s))

    # 2
    w("### 2. Warm function invoke (`php-82`)\n")
    s = res.get("2")
    w(_took(s))
    if s and not s.get("error"):
        w(f"A handler that does nothing and returns its own run time (`hrtime`, median {s['handler_ns_p50']:.0f} ns); "
          f"overhead = client-measured latency − that time. {s['workers']} warm instances "
          f"(`reservedConcurrency` = `provisionedConcurrency`). Sequential: {s['seq_count']} keep-alive requests per "
          f"round on one connection (python raw-socket client); p50/p99 are medians over rounds. `floor` is the same "
          f"client against nginx `return 200` (no PHP): the cost of the client and loopback TCP alone, included in "
          f"every row. Throughput: wrk -t2 -c16 POST.\n")
        w("| path | overhead p50 | overhead p99 | p50 − floor | invocations/s (wrk c16) | wrk p50 / p99 | CPU per invocation: node / PHP |")
        w("|---|---|---|---|---|---|---|")
        floor50 = median([r["p50_us"] for r in s["per_round"]["floor"]])
        for name, label in (("invoke", "Invoke API"), ("httpApi", "`httpApi` route"), ("floor", "floor (nginx, no PHP)")):
            p50 = median([r["p50_us"] for r in s["per_round"][name]])
            p99 = median([r["p99_us"] for r in s["per_round"][name]])
            thr = [r for r in s["throughput"] if r["target"] == name]
            w(f"| {label} | **{f_us(p50)}** | **{f_us(p99)}** | {f_us(p50 - floor50) if name != 'floor' else '–'} | "
              f"{f_int(median([r['rps'] for r in thr])) if thr else '–'} | "
              f"{(f_ms(median([r['p50_ms'] for r in thr])) + ' / ' + f_ms(median([r['p99_ms'] for r in thr]))) if thr else '–'} | "
              f"{(f_us(median([r['cpu_gateway_us'] for r in thr])) + ' / ' + f_us(median([r['cpu_php_us'] for r in thr]))) if thr else '–'} |")
            if name != "floor":
                goals.append((f"2. warm {label}: overhead p50 ≤ 150 µs", f_us(p50), p50 <= 150))
                goals.append((f"2. warm {label}: overhead p99 ≤ 1 ms", f_us(p99), p99 <= 1000))
        errs = sum(r["errors"] for r in s["throughput"])
        w(f"\nErrors: {errs} in the wrk runs, {s['errors_total']:.0f} counted by the node; instances started during the "
          f"runs: {s['instances_started_during_runs']:.0f}. Reference: Bref on Lambda, warm FPM empty app ~1 ms; "
          f"function runtime overhead 16 ms with BREF_LOOP_MAX=1 (DESIGN.md §6).\n")
        w(_log_block(s.get("error_lines"), "the function's log says"))
        w(_profile_block(s.get("profile"), "Where the node's CPU goes (Invoke API, wrk -c16)"))
    else:
        w(_failed(s))

    # 3
    w("### 3. Cold start: zero instances to first response byte\n")
    s = res.get("3")
    w(_took(s))
    if s and not s.get("error"):
        all_cold = all(s["instances_started"][k] >= s["requests"][k] for k in s["requests"])
        w(f"`BREF_LOOP_MAX: 1` makes every request start a new instance "
          f"({'checked: instances started = requests' if all_cold else '**but fewer instances started than requests: some were warm**'}). "
          f"Time from sending the request on a kept-alive connection to the first response byte; {s['per_kind']} cold "
          f"starts per app, {s['gap_ms']:.0f} ms apart. `PHP alone` starts the same PHP without Tusk: php-cgi with the "
          f"listening socket as stdin + one FastCGI request (web, Symfony), or `php` running the handler (function) — "
          f"spawn to first byte, the floor a per-request exec of PHP cannot beat.\n")
        w("| app | Tusk p50 | Tusk p99 | goal | PHP alone p50 / p99 | Tusk − PHP alone (p50) | instances started / requests | errors | Lambda + Bref (published) |")
        w("|---|---|---|---|---|---|---|---|---|")
        for kind, label, goal in (("function", "hello function (`php-82`, Invoke API)", 10), ("web", "web hello (`php-82-fpm`)", 10),
                                  ("symfony", "Symfony (HttpKernel + Routing, Debian packages)", 25)):
            t, fl = s["tusk"][kind], s["floor"][kind]
            w(f"| {label} | **{f_ms(t['p50_us'] / 1e3)}** | **{f_ms(t['p99_us'] / 1e3)}** | ≤ {goal} ms | "
              f"{f_ms(fl['p50_us'] / 1e3)} / {f_ms(fl['p99_us'] / 1e3)} | {f_ms((t['p50_us'] - fl['p50_us']) / 1e3)} | "
              f"{s['instances_started'][kind]:.0f} / {s['requests'][kind]} | {_errs(s['errors'][kind])} | ~250 ms average |")
            goals.append((f"3. cold start {kind}: p50 ≤ {goal} ms", f_ms(t["p50_us"] / 1e3), t["p50_us"] / 1e3 <= goal))
            goals.append((f"3. cold start {kind}: p99 ≤ {goal} ms", f_ms(t["p99_us"] / 1e3), t["p99_us"] / 1e3 <= goal))
            if s["errors"][kind]:
                goals.append((f"3. cold start {kind}: every request answered", _errs(s["errors"][kind]), False))
        for kind, lines in s.get("error_lines", {}).items():
            w(_log_block(lines, f"{kind}: failed cold starts; the function's log says"))
        w("\nLambda + Bref: ~250 ms average cold start (Bref docs; HTTP 180–340 ms, Laravel 850–1510 ms). "
          "Fission pool manager ~100 ms; Knative 0.8 s – several s; OpenFaaS on K8s 1–2 s (DESIGN.md §6).\n")
    else:
        w(_failed(s))

    # 4
    w("### 4. Burst: 0 → 64 concurrent requests on a cold function\n")
    s = res.get("4")
    w(_took(s))
    if s and not s.get("error"):
        w(f"Each round deploys a fresh service (no instances), opens {s['size']} connections, then sends one request on "
          f"each at once; latency from the burst's start to each complete response. Node defaults "
          f"(`--max-instances {s['max_instances']}`, queue 100, queue wait 10 s). Rival for the web app: nginx + php-fpm "
          f"`pm = ondemand`, `pm.max_children = {s['max_instances']}`, started fresh (no children) each round.\n")
        w("| round | target | ok | errors | p50 | p99 | max | instances / children started |")
        w("|---|---|---|---|---|---|---|---|")
        total_err = {"function": 0, "web": 0, "rival": 0}
        p99s = {"function": [], "web": [], "rival": []}
        for r in s["rounds"]:
            for name, label in (("function", "Tusk function (Invoke API)"), ("web", "Tusk web (`php-82-fpm`)"), ("rival", "nginx + php-fpm ondemand")):
                x = r[name]
                total_err[name] += x["errors"]
                p99s[name].append(x["p99_ms"])
                kinds = f" ({', '.join(x['error_kinds'])})" if x["errors"] else ""
                w(f"| {r['round'] + 1} | {label} | {x['ok']} | {x['errors']}{kinds} | {f_ms(x['p50_ms'])} | {f_ms(x['p99_ms'])} | "
                  f"{f_ms(x['max_ms'])} | {x['instances_started']:.0f} |")
        w("")
        for r in s["rounds"]:
            for name in ("function", "web"):
                w(_log_block(r[name].get("error_lines"), f"round {r['round'] + 1}, {name}: the function's log says"))
        for name in ("function", "web"):
            goals.append((f"4. burst 0 → {s['size']} ({name}): zero errors (p99 reported)",
                          f"{total_err[name]} errors, p99 {f_ms(median(p99s[name]))}", total_err[name] == 0))
    else:
        w(_failed(s))

    # 5
    w("### 5. Idle cost\n")
    s = res.get("5")
    w(_took(s))
    if s and not s.get("error"):
        w(f"{s['services']} services × {s['per_service']} `php-82` functions deployed to a fresh node (deploys took "
          f"{s['deploy_seconds']:.1f} s in all), no invocations. RSS = VmRSS; PSS = proportional set size "
          f"(shared libraries and opcache's shared memory split among the processes using them).\n")
        w("| what | value |\n|---|---|")
        w(f"| node RSS, nothing deployed | {f_mb(s['rss_empty_kb'])} |")
        w(f"| node RSS, {s['functions_listed']} functions, {s['live_instances_idle']} instances, "
          f"{s['node_processes_idle']} child processes | **{f_mb(s['rss_idle_kb'])}** |")
        w(f"| node RSS, same + 2 warm instances | {f_mb(s['rss_after_warm_kb'])} |")
        for kind, label in (("function", "warm function instance (`php bootstrap.php`), after 100 invocations"),
                            ("php-cgi", "warm web instance (php-cgi), after 100 requests")):
            i = s["instances"].get(kind)
            w(f"| {label} | " + (f"RSS {f_mb(i['rss_kb'])}, PSS {f_mb(i['pss_kb'])} |" if i else "not found |"))
        rv = s["rival"]
        w(f"| php-fpm child (rival), after 100 requests | RSS {f_mb(rv['child_rss_kb'])}, PSS {f_mb(rv['child_pss_kb'])} |")
        w(f"| php-fpm master (rival) | RSS {f_mb(rv['master_rss_kb'])}, PSS {f_mb(rv['master_pss_kb'])} |")
        w("")
        goals.append((f"5. {s['functions_listed']} idle functions: node RSS ≤ 100 MB", f_mb(s["rss_idle_kb"]),
                      s["rss_idle_kb"] <= 100 * 1024 and s["functions_listed"] >= 1000 and s["live_instances_idle"] == 0))
    else:
        w(_failed(s))

    # 6
    w("### 6. The gateway itself: Tusk vs FastCGI straight to PHP\n")
    s = res.get("6")
    w(_took(s))
    if s and not s.get("error"):
        w(f"`<?php echo \"Hello\";`, one PHP worker each, {s['count']} sequential keep-alive requests per target and "
          f"round, one python raw-socket client style for HTTP and FastCGI (requests encoded once). Direct php-cgi is "
          f"started the way Tusk starts it (socket on stdin, same flags), with the FastCGI params Tusk sends. "
          f"p50/p99: medians over rounds.\n")
        w("| target | p50 | p99 | added over its PHP (p50 / p99) |\n|---|---|---|---|")
        pr = s["per_round"]

        def m(name, key):
            return median([r[key] for r in pr[name]])

        rows = (("tusk", "HTTP → Tusk → php-cgi", "php-cgi"), ("php-cgi", "FastCGI → php-cgi (direct)", None),
                ("nginx", "HTTP → nginx → php-fpm", "php-fpm"), ("php-fpm", "FastCGI → php-fpm (direct)", None))
        for name, label, base in rows:
            added = (f"**{f_us(m(name, 'p50_us') - m(base, 'p50_us'))}** / {f_us(m(name, 'p99_us') - m(base, 'p99_us'))}" if base else "–")
            w(f"| {label} | {f_us(m(name, 'p50_us'))} | {f_us(m(name, 'p99_us'))} | {added} |")
        gw = m("tusk", "p50_us") - m("php-cgi", "p50_us")
        ng = m("nginx", "p50_us") - m("php-fpm", "p50_us")
        w(f"\nTusk's gateway adds {f_us(gw)} at p50 where nginx adds {f_us(ng)} (ratio {gw / ng:.2f}). The client's "
          f"own cost is in every row and cancels out in the differences.\n")
        goals.append(("6. gateway added latency (no numeric goal; nginx's shown for scale)", f"{f_us(gw)} vs nginx {f_us(ng)}", None))
    else:
        w(_failed(s))

    # goals
    w("### Goals of issue 5\n")
    w("| goal | measured | status |\n|---|---|---|")
    for g, measured, ok in goals:
        w(f"| {g} | {measured} | {'reported' if ok is None else verdict(ok)} |")
    for k in ("1", "2", "3", "4", "5", "6"):
        if res.get(k, {}).get("error"):
            w(f"| scenario {k} | did not run | **failed** |")
    for p in problems:
        w(f"| {p} | | **failed** |")
    w("")
    return "\n".join(out)


def _took(s):
    if not s or s.get("error") or "seconds_taken" not in s:
        return None
    return f"<sub>took {s['seconds_taken']:.0f} s; load average {s.get('load', '?')}</sub>\n"


def _profile_block(lines, title):
    if not lines:
        return None
    return f"<details><summary>{title}</summary>\n\n```\n" + "\n".join(lines) + "\n```\n</details>\n"


def _log_block(lines, title):
    if not lines:
        return None
    return f"{title}:\n\n```\n" + "\n".join(l[:300] for l in lines) + "\n```\n"


def _errs(errors):
    if not errors:
        return "0"
    kinds = sorted(set(errors))
    return f"{len(errors)} ({'; '.join(k.replace('|', '/') for k in kinds[:3])})"


def _failed(s):
    if s is None:
        return "Not run (not selected with `--only`).\n"
    err = s["error"].strip().splitlines()
    return "**Could not be measured:**\n\n```\n" + "\n".join(err[-15:]) + "\n```\n"


INTRO = """# Benchmarks

Tusk against its rivals on one machine, measured by `bench/run` (issue 5; the goals come from
DESIGN.md §6). One command builds the release binary, installs what is missing (nginx-light,
wrk, php8.2-fpm, Debian's php-symfony-* packages), sets up each scenario in a temp dir, runs
Tusk and its rival side by side, alternating, over several rounds, and rewrites the results
section below (between the `bench:results` markers; the notes after it are written by hand).

```sh
bench/run                 # full suite, 5 rounds (~9 min on 2 cores + the build); rewrites the section below
bench/run --quick         # CI smoke run (~30 s + the build): 1 short round, checks every scenario runs; no file written
bench/run --only 1,6      # some scenarios; --rounds N, --seconds S (wrk), --workers N, --profile (perf),
                          # --tusk-args "--sandbox off", --json F / --from-json F, --strict; --help for all
```

The six scenarios: (1) web hello world, Tusk vs nginx + php-fpm, wrk -c16 / -c64;
(2) warm function invoke through the Invoke API and an `httpApi` route, overhead over the
handler's own time; (3) cold starts, zero instances to first byte, with PHP started alone
beside them; (4) a burst of 64 concurrent requests on a cold function; (5) idle cost of 1,000
deployed functions and memory per warm instance; (6) the gateway's own latency next to
FastCGI sent straight to PHP.

How to read it: the machine is small and noisy (2 vCPUs shared with other builds and tests,
the load generator on the same box; each table shows the load average during its scenario),
so only medians over rounds and Tusk/rival ratios measured in the same run mean something —
never compare one number with a number from another run or machine. Both sides run the same
PHP binary with the same php.ini and opcache settings and the same number of PHP workers
(stated under each table). Latencies are measured by the client, so they include the client
and loopback TCP; a `floor` row shows that cost where it matters. Throughput counts 2xx
responses only. `bench/run --quick` exits non-zero when a scenario cannot run (setup failure,
wrong responses, nothing answered), never because something is slow; `--strict` also fails on
any failed request.

"""


def write_section(path, md):
    path = Path(path)
    section = f"{BEGIN}\n## Results\n\n{md}\n{END}\n"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            path.write_text(head + section + tail.lstrip("\n"))
            return
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    path.write_text(INTRO + section)


def request_errors(res):
    """Short descriptions of every failed request in the results (for the exit status with --strict)."""
    out = []
    s = res.get("1") or {}
    for side in ("tusk", "rival"):
        n = sum(r["errors"] for r in s.get("runs", []) if r["side"] == side)
        if n:
            out.append(f"scenario 1 {side}: {n}")
    s = res.get("2") or {}
    n = sum(r["errors"] for r in s.get("throughput", []))
    if n:
        out.append(f"scenario 2: {n}")
    s = res.get("3") or {}
    for k, v in (s.get("errors") or {}).items():
        if v:
            out.append(f"scenario 3 {k}: {len(v)}")
    s = res.get("4") or {}
    for r in s.get("rounds", []):
        for name in ("function", "web", "rival"):
            if r[name]["errors"]:
                out.append(f"scenario 4 round {r['round'] + 1} {name}: {r[name]['errors']}")
    return out
