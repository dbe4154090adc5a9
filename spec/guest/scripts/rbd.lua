-- An rbd device for guest specs: ublk-lua add spec/guest/scripts/rbd.lua IMAGE CONF [QUEUES]
-- (the conf travels in the device's record, so `recover` finds the cluster).
local image, conf, queues = ...
return { backend = "rbd", image = image, conf = conf, queues = tonumber(queues) or 1,
  osd_timeout = 10 }
