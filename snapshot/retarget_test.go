package snapshot

import (
	"strings"
	"testing"
)

// TestConfig_Retarget: every source moves to dir/<its base name>.
func TestConfig_Retarget(t *testing.T) {
	c := Config{Sources: []string{"/srv/data", "/etc/app/"}, Name: "x"}
	got := c.Retarget("/scratch/d1")
	if strings.Join(got.Sources, ",") != "/scratch/d1/data,/scratch/d1/app" || c.Sources[0] != "/srv/data" || got.Name != "x" {
		t.Fatalf("Retarget: %v (original %v)", got.Sources, c.Sources)
	}
}
