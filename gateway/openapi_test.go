package gateway_test

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/signals-sorcery/sas/gateway"
)

// errorResponses are the shared error answers of openapi.yaml by status. A
// route that gains a 4XX status not listed here needs a new component (the
// Error envelope, a description of its codes) and an entry here.
var errorResponses = map[string]string{
	"400": "BadRequest",
	"401": "Unauthorized",
	"403": "Forbidden",
	"404": "NotFound",
	"409": "Conflict",
	"413": "PayloadTooLarge",
	"422": "UnprocessableContent",
	"429": "TooManyRequests",
}

var camelCase = regexp.MustCompile(`^[a-z]+[A-Z][A-Za-z0-9]*$`)

// conventionProblems lists where doc departs from the conventions written
// above its paths, where Redocly's rules (scripts/lint) do not reach:
// operationIds are unique camelCase (client generators name methods from
// them), every 4XX answer is the shared response of its status,
// authenticated routes declare 401 and 403, every route 413 (the body limit
// is global), default is the Error envelope, and so is every shared error
// response.
func conventionProblems(doc *openapi3.T) []string {
	var out []string
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if !camelCase.MatchString(op.OperationID) {
				out = append(out, fmt.Sprintf("%s: operationId %q is not camelCase verb+noun", name, op.OperationID))
			}
			if other, dup := ids[op.OperationID]; dup {
				out = append(out, fmt.Sprintf("%s: operationId %q is also %s's", name, op.OperationID, other))
			}
			ids[op.OperationID] = name
			want := []string{"413", "default"}
			// No security field inherits the document's bearer.
			if op.Security == nil || len(*op.Security) > 0 {
				want = append(want, "401", "403")
			}
			for _, status := range want {
				if op.Responses.Value(status) == nil {
					out = append(out, fmt.Sprintf("%s: no %s response", name, status))
				}
			}
			for status, r := range op.Responses.Map() {
				component := errorResponses[status]
				switch {
				case status == "default":
					component = "Error"
				case status[0] != '4':
					continue
				case component == "":
					out = append(out, fmt.Sprintf("%s: %s has no shared response: add one to components/responses and errorResponses", name, status))
					continue
				}
				if ref := "#/components/responses/" + component; r.Ref != ref {
					out = append(out, fmt.Sprintf("%s: %s response is %q, want $ref %s", name, status, r.Ref, ref))
				}
			}
		}
	}
	if len(ids) == 0 {
		out = append(out, "no operations")
	}
	for _, n := range append([]string{"Error"}, mapValues(errorResponses)...) {
		r := doc.Components.Responses[n]
		var mt *openapi3.MediaType
		if r != nil && r.Value != nil {
			mt = r.Value.Content.Get("application/json")
		}
		if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Error" {
			out = append(out, fmt.Sprintf("components/responses/%s is not the Error envelope (application/json, $ref Error)", n))
		}
	}
	return out
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(gateway.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestOpenAPIConventions(t *testing.T) {
	for _, p := range conventionProblems(loadOpenAPI(t)) {
		t.Error(p)
	}
}

// TestOpenAPIConventionsCatchDrift: each kind of departure is reported.
func TestOpenAPIConventionsCatchDrift(t *testing.T) {
	for name, drift := range map[string]func(doc *openapi3.T){
		"no operationId":        func(doc *openapi3.T) { doc.Paths.Value("/v1/me").Get.OperationID = "" },
		"snake_case":            func(doc *openapi3.T) { doc.Paths.Value("/v1/me").Get.OperationID = "get_me" },
		"duplicate":             func(doc *openapi3.T) { doc.Paths.Value("/v1/limits").Get.OperationID = "getMe" },
		"no 401 on a /v1 route": func(doc *openapi3.T) { doc.Paths.Value("/v1/me").Get.Responses.Delete("401") },
		"no 413":                func(doc *openapi3.T) { doc.Paths.Value("/healthz").Get.Responses.Delete("413") },
		"inline 4XX": func(doc *openapi3.T) {
			r := doc.Paths.Value("/v1/usage").Get.Responses.Value("400")
			doc.Paths.Value("/v1/usage").Get.Responses.Set("400", &openapi3.ResponseRef{Value: r.Value})
		},
		"4XX of another status": func(doc *openapi3.T) {
			doc.Paths.Value("/v1/me").Get.Responses.Set("404", doc.Paths.Value("/v1/me").Get.Responses.Value("403"))
		},
		"4XX without a component": func(doc *openapi3.T) {
			doc.Paths.Value("/v1/me").Get.Responses.Set("418", doc.Paths.Value("/v1/me").Get.Responses.Value("403"))
		},
		"component not the envelope": func(doc *openapi3.T) {
			doc.Components.Responses["Conflict"].Value.Content.Get("application/json").Schema = &openapi3.SchemaRef{Value: openapi3.NewObjectSchema()}
		},
	} {
		t.Run(name, func(t *testing.T) {
			doc := loadOpenAPI(t)
			drift(doc)
			if p := conventionProblems(doc); len(p) == 0 {
				t.Error("not reported")
			}
		})
	}
}
