package quota_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/gateway/quota"
)

// TestREADMETemplatesOnlyPlansFileLoads: the plans file the README shows
// for a templates-only free plan loads as shown (a review found the
// loader refusing the key: the documented file stopped the gateway).
func TestREADMETemplatesOnlyPlansFileLoads(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for part := range strings.SplitSeq(string(readme), "```json") {
		if body, _, ok := strings.Cut(part, "```"); ok && strings.Contains(body, `"templates_only":true`) {
			block = body
		}
	}
	if block == "" {
		t.Fatal("no plans file with templates_only in README.md")
	}
	path := filepath.Join(t.TempDir(), "plans.json")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	plans, err := quota.Load(path)
	if err != nil {
		t.Fatalf("the README's plans file: %v", err)
	}
	if !plans["free"].TemplatesOnly || plans["pro"].TemplatesOnly {
		t.Errorf("templates_only: free %v, pro %v; want true, false", plans["free"].TemplatesOnly, plans["pro"].TemplatesOnly)
	}
}
