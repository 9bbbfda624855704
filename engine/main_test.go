package engine

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exampleOut lets examples in this package print log output.
type exampleOut struct{}

func (exampleOut) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
