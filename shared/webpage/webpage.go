// Package webpage renders the few HTML pages a person sees during sign-in
// (the dev identity provider's consent page, the sidecar's callback page)
// in one self-contained layout: inline CSS, no scripts unless a page asks,
// nothing loaded from elsewhere.
package webpage

import (
	"html/template"
	"io"
	"net/http"
)

// layout wraps a page body. Pages define the "body" template.
const layout = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} · Signals &amp; Sorcery</title>
<style>
:root{color-scheme:light dark;--bg:#0f0d16;--card:#1a1724;--ink:#ece9f5;--muted:#a49fb8;--accent:#8b5cf6;--accent2:#22d3ee;--bad:#f87171;--ok:#34d399}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:radial-gradient(1200px 600px at 20% -10%,#2a1f4d 0,transparent 60%),radial-gradient(900px 500px at 110% 110%,#0e3a46 0,transparent 55%),var(--bg);color:var(--ink);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:min(420px,92vw);background:var(--card);border:1px solid #2c2740;border-radius:18px;padding:32px 28px;box-shadow:0 20px 60px #0008}
.brand{display:flex;align-items:center;gap:10px;color:var(--muted);font-size:14px;letter-spacing:.02em;margin-bottom:18px}
.logo{width:28px;height:28px;border-radius:8px;background:linear-gradient(135deg,var(--accent),var(--accent2))}
h1{font-size:22px;margin:0 0 8px}
p{margin:0 0 16px;color:var(--muted)}
.status{width:44px;height:44px;border-radius:50%;display:grid;place-items:center;font-size:24px;margin-bottom:14px}
.status.ok{background:#34d39922;color:var(--ok)} .status.bad{background:#f8717122;color:var(--bad)}
.error{background:#f8717118;border:1px solid #f8717155;color:#fecaca;border-radius:10px;padding:10px 12px;margin:0 0 16px;word-break:break-word}
label{display:block;font-size:13px;color:var(--muted);margin:12px 0 6px}
input{width:100%;padding:11px 12px;border-radius:10px;border:1px solid #3a3452;background:#120f1b;color:var(--ink);font:inherit}
input:focus{outline:2px solid var(--accent);border-color:transparent}
.actions{display:flex;gap:10px;margin-top:22px}
button{flex:1;padding:11px 14px;border-radius:10px;border:0;font:600 15px system-ui,sans-serif;cursor:pointer}
.primary{background:linear-gradient(135deg,var(--accent),#6d28d9);color:#fff}
.secondary{background:#2a2540;color:var(--ink)}
.fine{font-size:12px;color:#7d7894;margin-top:18px}
</style></head>
<body><main>
<div class="brand"><div class="logo"></div>Signals &amp; Sorcery</div>
{{template "body" .}}
</main></body></html>`

// Page is a parsed page: the layout plus one body.
type Page struct{ t *template.Template }

// Must parses body (a template defining the page's content, with {{.Title}}
// and the page's own fields) into the layout, and panics on a syntax error:
// pages are constants of the program.
func Must(body string) Page {
	t := template.Must(template.New("layout").Parse(layout))
	template.Must(t.New("body").Parse(body))
	return Page{t: t}
}

// Render writes the page with data, which must have a Title field.
func (p Page) Render(w io.Writer, data any) error { return p.t.ExecuteTemplate(w, "layout", data) }

// Serve answers an HTTP request with the page: no caching, no framing, and
// a content security policy that forbids loading anything.
func (p Page) Serve(w http.ResponseWriter, status int, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = p.Render(w, data)
}
