package login

import (
	"net/http"

	"github.com/signals-sorcery/sas/shared/webpage"
)

type pageData struct {
	Title string
	OK    bool
	Who   string
	Error string
}

// resultPage is what the browser shows after the redirect: small, styled,
// self-contained (the layout loads nothing), every value HTML-escaped by
// html/template.
var resultPage = webpage.Must(`
{{if .OK}}
<div class="status ok">✓</div>
<h1>{{.Title}}</h1>
<p>Signed in as <strong>{{.Who}}</strong>.</p>
<p>You can close this tab and return to Signals &amp; Sorcery.</p>
{{else}}
<div class="status bad">!</div>
<h1>{{.Title}}</h1>
<div class="error">{{.Error}}</div>
<p>Close this tab and try again from the app or with <code>sas-login login</code>.</p>
{{end}}`)

func showPage(w http.ResponseWriter, status int, d pageData) { resultPage.Serve(w, status, d) }
