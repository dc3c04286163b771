#!/usr/bin/env python3
"""Write the man pages gatehouse(8), gatehouse.conf(5) and gatehouse-confgen(8).

gatehouse.conf(5) is generated from conf/gatehouse.conf, the documented
configuration the package installs: every setting, its default (the value
written there) and the comment above it. The reference and the file cannot
drift because one is made from the other. gatehouse-confgen(8) is its
--help text.

Usage: scripts/gen-man.py [--version V] [--conf FILE] --out DIR
"""

import argparse
import datetime
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def roff(text):
    """Escape one line of text for roff."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def paragraphs(lines):
    """Comment lines -> roff: prose is filled, indented lines are examples."""
    out, in_ex = [], False
    for ln in lines:
        example = ln.startswith("  ") or re.match(r"^\s*[\w.]+ = ", ln) is not None
        if example and not in_ex:
            out.append(".RS 2\n.nf")
            in_ex = True
        elif not example and in_ex:
            out.append(".fi\n.RE")
            in_ex = False
        if not ln.strip():
            if not in_ex:
                out.append(".sp")
            continue
        out.append(roff(ln.strip() if not in_ex else ln.rstrip()))
    if in_ex:
        out.append(".fi\n.RE")
    return out


SETTING = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_conf(path):
    """conf/gatehouse.conf -> (intro comment lines, [entries]).

    An entry is ("group", name, comment) for "name = {", ("setting",
    dotted name, value, comment) for a value, ("note", comment) for a
    comment block that no setting follows (a commented-out group)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    intro, entries, comment, stack = [], [], [], []
    i, started = 0, False
    while i < len(lines):
        ln = lines[i]
        s = ln.strip()
        if s.startswith("#"):
            text = s[1:]
            comment.append(text[1:] if text.startswith(" ") else text)
            i += 1
            continue
        if not s:
            if comment and not started:
                intro, comment, started = comment, [], True
            elif comment and i + 1 < len(lines) and lines[i + 1].strip().startswith("#"):
                entries.append(("note", comment))
                comment = []
            i += 1
            continue
        started = True
        if s.startswith("}") or s.startswith(")"):
            if s.startswith("}") and stack:
                stack.pop()
            i += 1
            continue
        m = SETTING.match(ln)
        if not m:
            i += 1
            continue
        name, value = m.group(2), m.group(3)
        if value == "{":
            entries.append(("group", name, comment))
            stack.append(name)
            comment = []
            i += 1
            continue
        inline = ""
        if "#" in value and not value.startswith('"'):
            value, inline = value.split("#", 1)
            value = value.strip()
            inline = inline.strip()
        if value.startswith("(") and not value.rstrip(";").endswith(")"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(")"):
                value += " " + lines[j].strip()
                j += 1
            value += " )"
            i = j
        value = value.rstrip(";").strip()
        full = ".".join(stack + [name])
        entries.append(("setting", full, value, comment, inline))
        comment = []
        i += 1
    return intro, entries


def conf_page(conf, version, date):
    intro, entries = parse_conf(conf)
    out = ['.TH GATEHOUSE.CONF 5 "%s" "gatehouse %s" "File Formats"' % (date, version),
           ".SH NAME", "gatehouse.conf \\- configuration of the gatehouse mail and web proxy",
           ".SH SYNOPSIS", ".B /etc/gatehouse/gatehouse.conf",
           ".SH DESCRIPTION"]
    out += paragraphs(intro)
    out += [".PP", "This reference is generated from the documented configuration file "
            "that the package installs; each setting shows its default value.",
            ".SH SETTINGS"]
    pending = []   # consecutive settings sharing one comment

    def flush():
        if not pending:
            return
        out.append(".TP")
        first = True
        for full, value, inline, _ in pending:
            if not first:
                out.append(".TQ")
            out.append("\\fB%s\\fR = %s" % (roff(full), roff(value)))
            first = False
        body = paragraphs(pending[0][3])
        for _, _, inline, _ in pending:
            if inline:
                body.append(roff(inline))
        out.extend(body or ["(no description)"])
        pending.clear()

    for e in entries:
        if e[0] == "group":
            flush()
            out.append(".SS %s" % e[1])
            out += paragraphs(e[2])
        elif e[0] == "note":
            flush()
            m = re.search(r"^\s*(\w+) = ", "\n".join(e[1]), re.M)
            out.append(".SS %s" % (m.group(1) if m else "Note"))
            out += paragraphs(e[1])
        else:
            _, full, value, comment, inline = e
            if comment and pending:
                flush()
            pending.append((full, value, inline, comment))
    flush()
    out += [".SH FILES", ".TP", ".I /etc/gatehouse/gatehouse.conf",
            "The configuration (a conffile of the Debian package).",
            ".TP", ".I /etc/gatehouse/tls/", "A place for certificates and keys.",
            ".SH SEE ALSO", ".BR gatehouse (8),", ".BR gatehouse\\-confgen (8)"]
    return "\n".join(out) + "\n"


def main_page(version, date):
    return """.TH GATEHOUSE 8 "{date}" "gatehouse {version}" "System Administration"
.SH NAME
gatehouse \\- IMAP, POP3 and HTTPS reverse proxy for Zimbra and Carbonio mailstores
.SH SYNOPSIS
.B gatehouse
.RB [ \\-t ]
.RB [ \\-c
.IR file ]
.br
.B gatehouse \\-v
.SH DESCRIPTION
.B gatehouse
accepts IMAP, POP3 and HTTP(S) clients, finds each user's mailbox server
through the route lookup service of the mailbox servers (Zimbra's
nginx\\-lookup on port 7072), caches routes in memcached with Zimbra's keys,
throttles logins and relays the session to the mailbox server. It replaces
the Proxy role (nginx) of Zimbra and Carbonio.
.PP
The main thread reads the configuration, starts one worker thread (each
with its own event loop) per CPU core or as configured, and then only
handles signals.
.SH OPTIONS
.TP
.BI \\-c " file"
The configuration file (default
.IR /etc/gatehouse/gatehouse.conf ).
.TP
.B \\-t
Check the configuration, certificates included, and exit: 0 when it is
valid, 1 with "FILE:LINE: setting: what is wrong".
.TP
.B \\-v
Print the version (and "(systemd)" when built with sd_notify support).
.SH SIGNALS
.TP
.B SIGHUP
Reload the configuration: new sessions use it, established sessions
continue. A file that does not check, or a new listen address that cannot
be bound, is refused and the running configuration kept.
.TP
.B SIGUSR1
Reopen the error, audit and access logs (logrotate).
.TP
.BR SIGTERM ", " SIGINT
Stop accepting and drain sessions for up to shutdown_timeout seconds; a
second signal closes them at once.
.SH SYSTEMD
The unit gatehouse.service runs
.B gatehouse
as the user gatehouse with Type=notify: READY=1 is sent once every listener
is bound, RELOADING=1 and READY=1 around a reload, STOPPING=1 when the drain
starts and WATCHDOG=1 every half WatchdogSec. "systemctl reload gatehouse"
runs "gatehouse \\-t" first. Where systemd is absent, run the unit's
ExecStart command line:
.PP
.RS 2
.nf
gatehouse \\-c /etc/gatehouse/gatehouse.conf
.fi
.RE
.SH FILES
.TP
.I /etc/gatehouse/gatehouse.conf
The configuration, see
.BR gatehouse.conf (5).
.TP
.I /var/log/gatehouse/
Log files, when the configuration names files there (rotated by
/etc/logrotate.d/gatehouse).
.SH SEE ALSO
.BR gatehouse.conf (5),
.BR gatehouse\\-confgen (8)
""".format(date=date, version=version)


def confgen_page(version, date):
    tool = os.path.join(TOP, "tools", "gatehouse-confgen")
    helptext = subprocess.run([sys.executable, tool, "--help"], check=True,
                              capture_output=True, text=True).stdout
    body = "\n".join(roff(l) for l in helptext.rstrip().split("\n"))
    return """.TH GATEHOUSE\\-CONFGEN 8 "{date}" "gatehouse {version}" "System Administration"
.SH NAME
gatehouse\\-confgen \\- write a gatehouse.conf from a Zimbra or Carbonio site's attributes
.SH DESCRIPTION
.nf
{body}
.fi
.SH SEE ALSO
.BR gatehouse (8),
.BR gatehouse.conf (5),
.BR zmprov (1)
""".format(date=date, version=version, body=body)


def meson_version():
    m = re.search(r"version\s*:\s*'([^']+)'", open(os.path.join(TOP, "meson.build")).read())
    return m.group(1) if m else "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", default=None)
    ap.add_argument("--conf", default=os.path.join(TOP, "conf", "gatehouse.conf"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    version = a.version or meson_version()
    # Reproducible: the date of the source, not of the build.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", os.path.getmtime(a.conf)))
    date = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d")
    os.makedirs(a.out, exist_ok=True)
    pages = {"gatehouse.8": main_page(version, date),
             "gatehouse.conf.5": conf_page(a.conf, version, date),
             "gatehouse-confgen.8": confgen_page(version, date)}
    for name, text in pages.items():
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
