module omendb.dev/omendb

go 1.19
