{
  "targets": [
    {
      "target_name": "fuse",
      "include_dirs": [
        "<!(node -e \"require('napi-macros')\")",
        "<!(node -e \"require('fuse-shared-library/include')\")"
      ],
      "libraries": ["<!(node -e \"require('fuse-shared-library/lib')\")"],
      "sources": ["src/fuse-native.c"],
      "cflags": ["-O3", "-Wall"]
    }
  ]
}
