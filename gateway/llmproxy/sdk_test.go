package llmproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/signals-sorcery/sas/gateway/app"
)

// The official clients, unchanged, configured with baseURL = <gateway>/v1
// and the user's ID token as API key.

// sdkEnvs runs f against a gateway with one upstream, and against one
// whose first upstream refuses every connection: the SDKs see no
// difference through a failover.
func sdkEnvs(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("one upstream", func(t *testing.T) { f(t, newEnv(t, nil, app.Deps{})) })
	t.Run("through a failover", func(t *testing.T) {
		a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
		a.url = refusedURL(t)
		f(t, failoverEnv(t, []*fakeUpstream{a, b}, nil))
	})
}

func TestGoOpenAIClient(t *testing.T) { sdkEnvs(t, testGoOpenAIClient) }

func testGoOpenAIClient(t *testing.T, e *env) {
	cfg := openai.DefaultConfig(e.tok)
	cfg.BaseURL = e.url + "/v1"
	c := openai.NewClientWithConfig(cfg)
	ctx := context.Background()

	models, err := c.ListModels(ctx)
	if err != nil || len(models.Models) != 1 || models.Models[0].ID != "gpt-4o-mini" {
		t.Fatalf("ListModels = %+v, %v", models, err)
	}
	req := openai.ChatCompletionRequest{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hello from go"}}}
	resp, err := c.CreateChatCompletion(ctx, req)
	if err != nil || !strings.Contains(resp.Choices[0].Message.Content, "hello from go") || resp.Usage.TotalTokens == 0 {
		t.Fatalf("CreateChatCompletion = %+v, %v", resp, err)
	}
	stream, err := c.CreateChatCompletionStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	chunks := 0
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		chunks++
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	stream.Close()
	if chunks < 3 || text.String() != resp.Choices[0].Message.Content {
		t.Errorf("streamed %d chunks: %q, want the same text as %q", chunks, text.String(), resp.Choices[0].Message.Content)
	}
	// The Responses API, plain and streamed.
	rreq := openai.CreateResponseRequest{Model: "gpt-4o-mini", Instructions: "Be brief.", Input: "hello from go responses"}
	rresp, err := c.CreateResponse(ctx, rreq)
	if err != nil || !strings.Contains(rresp.GetOutputText(), "hello from go responses") || rresp.Usage == nil || rresp.Usage.TotalTokens == 0 {
		t.Fatalf("CreateResponse = %+v, %v", rresp, err)
	}
	rstream, err := c.CreateResponseStream(ctx, rreq)
	if err != nil {
		t.Fatal(err)
	}
	text.Reset()
	var completed *openai.CreateResponseResponse
	for {
		ev, err := rstream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("response stream: %v", err)
		}
		switch ev.Type {
		case openai.ResponseStreamEventOutputTextDelta:
			text.WriteString(ev.Delta)
		case openai.ResponseStreamEventCompleted:
			completed = ev.Response
		}
	}
	rstream.Close()
	if text.String() != rresp.GetOutputText() || completed == nil || completed.Usage == nil || completed.Usage.TotalTokens != rresp.Usage.TotalTokens {
		t.Errorf("streamed %q (completed %+v), want %q", text.String(), completed, rresp.GetOutputText())
	}

	// The free plan's 10 a minute: the SDK surfaces the 429.
	var apiErr *openai.APIError
	for range 20 {
		_, err = c.CreateChatCompletion(ctx, req)
		if err != nil {
			break
		}
	}
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 429 || apiErr.Code != "rate_limited" {
		t.Errorf("after the per-minute limit: %v", err)
	}
}

func TestNodeOpenAISDK(t *testing.T) { sdkEnvs(t, testNodeOpenAISDK) }

func testNodeOpenAISDK(t *testing.T, e *env) {
	dir, _ := filepath.Abs("testdata/sdk")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run scripts/test, which installs Node.js and the openai package")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Fatalf("the openai npm package is not installed in %s: run scripts/test (it runs npm ci there)", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "sdk.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SAS_BASE_URL="+e.url+"/v1", "SAS_TOKEN="+e.tok)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("node: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		Models           []string
		Text             string
		Usage            int
		Chunks           int
		Streamed         string
		RateLimit        string
		RateLimitStatus  int
		ResponseText     string
		ResponseUsage    int
		ResponseEvents   []string
		ResponseStreamed string
		TemplateEvents   []string
		TemplateStreamed string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if len(got.Models) != 1 || got.Models[0] != "gpt-4o-mini" {
		t.Errorf("models = %v", got.Models)
	}
	if !strings.Contains(got.Text, "hello from node") || got.Usage == 0 {
		t.Errorf("completion = %q, usage %d", got.Text, got.Usage)
	}
	if got.Chunks < 3 || !strings.Contains(got.Streamed, "stream please") {
		t.Errorf("stream: %d chunks, %q", got.Chunks, got.Streamed)
	}
	if !strings.Contains(got.ResponseText, "hello from node responses") || got.ResponseUsage == 0 {
		t.Errorf("responses.create = %q, usage %d", got.ResponseText, got.ResponseUsage)
	}
	if n := len(got.ResponseEvents); n < 8 || got.ResponseEvents[0] != "response.created" || got.ResponseEvents[n-1] != "response.completed" ||
		got.ResponseStreamed != got.ResponseText {
		t.Errorf("streamed responses.create: events %v, text %q (want %q)", got.ResponseEvents, got.ResponseStreamed, got.ResponseText)
	}
	if n := len(got.TemplateEvents); n < 8 || got.TemplateEvents[0] != "response.created" || got.TemplateEvents[n-1] != "response.completed" ||
		!strings.Contains(got.TemplateStreamed, "lo-fi from node") {
		t.Errorf("streamed template run: events %v, text %q", got.TemplateEvents, got.TemplateStreamed)
	}
	if got.RateLimit != "RateLimitError" || got.RateLimitStatus != 429 {
		t.Errorf("rate limit surfaced as %q (%d), want the SDK's RateLimitError", got.RateLimit, got.RateLimitStatus)
	}
}
