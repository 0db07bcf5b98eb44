// Package proto holds Deputy's API definitions; deputy/v1 has the generated Go.
package proto

// The protoc plugins are pinned in go.mod's tool block, so regeneration does
// not depend on what happens to be on PATH. protoc itself comes from Debian's
// protobuf-compiler (scripts/deps installs it).
//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative deputy/v1/deputy.proto"
