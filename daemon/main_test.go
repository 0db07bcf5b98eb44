package daemon_test

import (
	"os"
	"testing"

	"github.com/deputyhq/deputy/daemon/daemontest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.RemoveBinaries()
	daemontest.RemoveCgroupRoots()
	os.Exit(code)
}
