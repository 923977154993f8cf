package llmproxy

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Template answers POST /v1/templates/{name}: the template's current
// version, rendered with the caller's variables into a chat completion or
// a Responses API request, then parsed, estimated, reserved, relayed and
// settled exactly as that request sent raw — the answer is the endpoint's
// (JSON or SSE) and the usage event names the template and version. Every
// refusal of the gateway's comes before the reservation and consumes
// nothing; the upstream's own refusal of the rendered request (a 4xx) is
// relayed and counted as for a raw request.
//
// Errors: not_found (no such template), model_not_allowed (its model is
// not on the caller's plan), bad_request (the body, or a variable: named),
// unavailable (templates never loaded), and Chat's or Responses's.
func (p *Proxy) Template(w http.ResponseWriter, r *http.Request, u gateway.User, name string) error {
	plan := p.plan(u)
	t, ok, loaded := p.o.Templates.Get(name)
	switch {
	case !ok && !loaded:
		return wire.Errorf(wire.CodeUnavailable, "The prompt templates could not be loaded yet; try again shortly.")
	case !ok:
		return wire.Errorf(wire.CodeNotFound, "No prompt template %q.", name)
	case !plan.Allows(t.Model):
		return wire.Errorf(wire.CodeModelNotAllowed, "Template %q runs model %q, which is not available on the %s plan.", name, t.Model, u.Plan)
	}
	raw, err := io.ReadAll(r.Body)
	variables, stream, err := readTemplateRun(raw, err)
	if err != nil {
		return err
	}
	body, err := t.Render(variables, stream)
	if err != nil {
		return wire.Wrap(wire.CodeBadRequest, err.Error(), err)
	}
	from := ran{template: t.Name, version: t.Version}
	if t.Endpoint == templates.EndpointChat {
		return p.chat(w, r, u, plan, body, nil, from)
	}
	return p.responses(w, r, u, plan, body, nil, from)
}

// Templates answers GET /v1/templates: the templates the caller's plan
// may run — name, version, endpoint, model and variables, never the
// prompt text.
func (p *Proxy) Templates(w http.ResponseWriter, u gateway.User) error {
	plan := p.plan(u)
	list := struct {
		Object string           `json:"object"`
		Data   []templates.Info `json:"data"`
	}{Object: "list", Data: []templates.Info{}}
	all, loaded := p.o.Templates.All()
	if !loaded {
		return wire.Errorf(wire.CodeUnavailable, "The prompt templates could not be loaded yet; try again shortly.")
	}
	for _, t := range all {
		if plan.Allows(t.Model) {
			list.Data = append(list.Data, t.Info())
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

// readTemplateRun reads {"variables": {…}, "stream": bool} as strictly as
// a raw request's body: exact keys, each once at every depth, nothing
// after the object.
func readTemplateRun(raw []byte, readErr error) (map[string]json.RawMessage, bool, error) {
	bad := wire.Errorf(wire.CodeBadRequest, `The body must be a JSON object {"variables": {…}, "stream": true|false} and nothing else.`)
	o, err := readObject(raw, readErr)
	if err != nil {
		return nil, false, err
	}
	variables := map[string]json.RawMessage{}
	stream := false
	for k, v := range o {
		switch k {
		case "variables":
			vars, ok := asObject(v)
			if !ok && v.Kind() != 'n' {
				return nil, false, bad
			}
			for name, value := range vars {
				variables[name] = json.RawMessage(value)
			}
		case "stream":
			switch string(v) {
			case "true":
				stream = true
			case "false", "null":
			default:
				return nil, false, bad
			}
		default:
			return nil, false, bad
		}
	}
	return variables, stream, nil
}
