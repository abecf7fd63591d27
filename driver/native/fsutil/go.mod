module tandem/fsutil

go 1.26
