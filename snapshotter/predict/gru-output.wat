;; The GRU's output layer for a greedy rollout step: the logits of a set of
;; output rows, four lanes at a time (WebAssembly SIMD). JavaScript does the
;; same work at ~0.9 GMAC/s here; this does ~8 GMAC/s, which is what brings a
;; 64-file rollout over 4096 candidates under 5 ms (predictor-gru.ts).
;; Compiled by scripts/embed-wasm.ts into gru-output-wasm.ts; a unit test
;; checks that the embedded bytes are this file's.
;;
;; logits(wo, bo, h, rows, n, out, H): for i < n, with o = rows[i],
;;   out[i] = bo[o] + Σ_k wo[o·H + k] · h[k]
;; All arguments but n and H are byte offsets into the exported memory; H is a
;; multiple of 16 and every offset a multiple of 16.
(module
  (memory (export "memory") 1)
  (func (export "logits")
    (param $wo i32) (param $bo i32) (param $h i32) (param $rows i32) (param $n i32) (param $out i32) (param $H i32)
    (local $i i32) (local $o i32) (local $p i32) (local $q i32) (local $end i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $o (i32.load (i32.add (local.get $rows) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $p (i32.add (local.get $wo) (i32.shl (i32.mul (local.get $o) (local.get $H)) (i32.const 2))))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $H) (i32.const 2))))
        (local.set $q (local.get $h))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0))
        (local.set $a3 (v128.const i32x4 0 0 0 0))
        ;; four independent sums, 16 floats per turn
        (loop $k
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load (local.get $p)) (v128.load (local.get $q)))))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load offset=16 (local.get $p)) (v128.load offset=16 (local.get $q)))))
          (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load offset=32 (local.get $p)) (v128.load offset=32 (local.get $q)))))
          (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load offset=48 (local.get $p)) (v128.load offset=48 (local.get $q)))))
          (local.set $p (i32.add (local.get $p) (i32.const 64)))
          (local.set $q (i32.add (local.get $q) (i32.const 64)))
          (br_if $k (i32.lt_u (local.get $p) (local.get $end))))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (f32.add (f32.load (i32.add (local.get $bo) (i32.shl (local.get $o) (i32.const 2))))
            (f32.add (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
                     (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $row))))
)
