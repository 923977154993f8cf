package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDemoHeadless runs `go run ./scripts/demo --headless` as a newcomer
// would, from the repository root: every step completes and it cleans up.
func TestDemoHeadless(t *testing.T) {
	cmd := exec.Command("go", "run", "./scripts/demo", "--headless")
	cmd.Dir = "../.."
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"signed in:", `"plan":"free"`, `"requests_per_minute"`, `"gpt-4o-mini"`, "You said: play me a little tune", "You said: sing me a loop", `"loop-idea"`, "8-bar loop in Am for rainy lo-fi", "✓ Every step worked."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(string(out), "\n") {
		if dir, ok := strings.CutPrefix(strings.TrimSpace(line), "built into "); ok {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the demo left %s behind", dir)
			}
		}
	}
}
