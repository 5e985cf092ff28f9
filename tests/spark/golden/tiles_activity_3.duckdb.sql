WITH ev AS (SELECT "customer_id" AS __key, _event_time_us AS __et, _seq AS __seq, _ingested_at_us AS __ing, "amount" AS "v_amount", "flag" AS "v_flag", "item" AS "v_item", "kind" AS "v_kind", "price" AS "v_price", "qty" AS "v_qty", epoch_us("seen") AS "v_seen" FROM events WHERE "customer_id" IS NOT NULL AND ((("kind" <> 'skip') OR ("kind" IS NULL)) AND (NOT ("item" IN ('bot'))))),
t AS (SELECT *, ((__et - 1) - (((__et - 1) % 20000000) + 20000000) % 20000000) // 20000000 AS __k FROM ev WHERE __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000)
SELECT __key, __k, min("v_seen") AS p0, coalesce(max_by(struct_pack(t := __et, s := __seq, v := "v_item"), (CAST(__et AS HUGEINT) * 1000000000000 + __seq), 3) FILTER (WHERE "v_item" IS NOT NULL), []) AS p1
FROM t WHERE __k >= 88616154
GROUP BY __key, __k
ORDER BY __key, __k
