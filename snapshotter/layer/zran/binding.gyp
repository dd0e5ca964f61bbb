{
  "targets": [
    {
      "target_name": "zran",
      "sources": ["zran.c"],
      "libraries": ["-lz"],
      "cflags": ["-O2", "-Wall", "-fvisibility=hidden"]
    }
  ]
}
