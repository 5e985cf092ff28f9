WITH ev AS (SELECT "customer_id" AS __key, _event_time_us AS __et, _seq AS __seq, _ingested_at_us AS __ing, "amount" AS "v_amount", "flag" AS "v_flag", "item" AS "v_item", "kind" AS "v_kind", "price" AS "v_price", "qty" AS "v_qty", epoch_us("seen") AS "v_seen" FROM events WHERE "customer_id" IS NOT NULL AND ((("kind" <> 'skip') OR ("kind" IS NULL)) AND (NOT ("item" IN ('bot')))))
SELECT __key, arg_max_null(struct_pack(t := __et, s := __seq, v0 := "v_kind", v1 := "v_price", v2 := "v_seen", v3 := "v_flag"), (CAST(__et AS HUGEINT) * 1000000000000 + __seq)) AS __latest
FROM ev
WHERE __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000
GROUP BY __key
ORDER BY __key
